package payloadcrypt

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/proto"
)

// confirmation looks like the signal a device workflow receives: the
// values that must not be readable in a history.
type confirmation struct {
	ICCID        string `json:"iccid"`
	MSISDN       string `json:"msisdn"`
	FaultMessage string `json:"faultMessage"`
	SubmittedBy  string `json:"submittedBy"`
}

var sample = confirmation{
	ICCID:        "89148000101234567890",
	MSISDN:       "15555550123",
	FaultMessage: "REQUEST_FAILED. Device not found",
	SubmittedBy:  "Zelda Quartermain",
}

func secretsOf(c confirmation) []string {
	return []string{c.ICCID, c.MSISDN, c.FaultMessage, c.SubmittedBy}
}

func newKeys(t *testing.T, ids ...string) (string, map[string][]byte) {
	t.Helper()
	dir := t.TempDir()
	keys := map[string][]byte{}
	for _, id := range ids {
		path, err := WriteNewKey(dir, id)
		require.NoError(t, err)
		key, err := readKeyFile(path)
		require.NoError(t, err)
		keys[id] = key
	}
	return dir, keys
}

func newCodec(t *testing.T, keys map[string][]byte, current string) *Codec {
	t.Helper()
	c, err := New(keys, current)
	require.NoError(t, err)
	return c
}

// requireOpaque fails when any of the values shows in the payload's
// wire form.
func requireOpaque(t *testing.T, p *commonpb.Payload, values ...string) {
	t.Helper()
	wire, err := proto.Marshal(p)
	require.NoError(t, err)
	for _, v := range values {
		require.False(t, bytes.Contains(wire, []byte(v)), "%q readable in the encoded payload", v)
	}
}

func TestRoundTrip(t *testing.T) {
	_, keys := newKeys(t, "2026-01")
	dc := newCodec(t, keys, "2026-01").DataConverter()

	p, err := dc.ToPayload(sample)
	require.NoError(t, err)
	require.Equal(t, Encoding, string(p.Metadata[converter.MetadataEncoding]))
	require.Equal(t, "2026-01", string(p.Metadata[MetadataKeyID]))
	requireOpaque(t, p, append(secretsOf(sample), "json/plain")...)

	var got confirmation
	require.NoError(t, dc.FromPayload(p, &got))
	require.Equal(t, sample, got)

	// Two encryptions of one value differ (a fresh nonce each time), so
	// equal inputs cannot be spotted in a history.
	again, err := dc.ToPayload(sample)
	require.NoError(t, err)
	require.NotEqual(t, p.Data, again.Data)
}

// After a rotation, payloads of the old key still decode, and new ones
// use the new key.
func TestRotation(t *testing.T) {
	_, keys := newKeys(t, "old", "new")
	before := newCodec(t, map[string][]byte{"old": keys["old"]}, "old")
	oldPayload, err := before.DataConverter().ToPayload(sample)
	require.NoError(t, err)

	after := newCodec(t, keys, "new")
	var got confirmation
	require.NoError(t, after.DataConverter().FromPayload(oldPayload, &got))
	require.Equal(t, sample, got)

	newPayload, err := after.DataConverter().ToPayload(sample)
	require.NoError(t, err)
	require.Equal(t, "new", string(newPayload.Metadata[MetadataKeyID]))
	require.Equal(t, []string{"new", "old"}, after.KeyIDs())
	require.Equal(t, "new", after.CurrentKeyID())
}

// A payload of a key that was dropped too early is refused with a message
// naming that key, not decoded into garbage.
func TestUnknownKey(t *testing.T) {
	_, keys := newKeys(t, "old", "new")
	oldPayload, err := newCodec(t, keys, "old").Encode([]*commonpb.Payload{plain(t)})
	require.NoError(t, err)

	_, err = newCodec(t, map[string][]byte{"new": keys["new"]}, "new").Decode(oldPayload)
	require.ErrorIs(t, err, ErrUnknownKey)
	require.Contains(t, err.Error(), `"old"`)
	require.Contains(t, err.Error(), "old.key")
	// Inside a workflow task the task fails and is retried (once the key
	// is deployed) rather than the workflow failing.
	var taskFailure *converter.WorkflowTaskFailureError
	require.True(t, errors.As(err, &taskFailure))

	// A missing key id is refused too, without echoing the metadata.
	noID := proto.Clone(oldPayload[0]).(*commonpb.Payload)
	delete(noID.Metadata, MetadataKeyID)
	_, err = newCodec(t, keys, "new").Decode([]*commonpb.Payload{noID})
	require.ErrorIs(t, err, ErrUnknownKey)
}

func TestTamperedPayloadRefused(t *testing.T) {
	_, keys := newKeys(t, "a", "b")
	c := newCodec(t, keys, "a")
	enc, err := c.Encode([]*commonpb.Payload{plain(t)})
	require.NoError(t, err)

	flipped := proto.Clone(enc[0]).(*commonpb.Payload)
	flipped.Data[len(flipped.Data)-20] ^= 0x01
	_, err = c.Decode([]*commonpb.Payload{flipped})
	require.ErrorIs(t, err, ErrDecrypt)

	truncated := proto.Clone(enc[0]).(*commonpb.Payload)
	truncated.Data = truncated.Data[:10]
	_, err = c.Decode([]*commonpb.Payload{truncated})
	require.ErrorIs(t, err, ErrDecrypt)

	// Naming another loaded key does not get the payload decrypted either.
	relabelled := proto.Clone(enc[0]).(*commonpb.Payload)
	relabelled.Metadata[MetadataKeyID] = []byte("b")
	_, err = c.Decode([]*commonpb.Payload{relabelled})
	require.ErrorIs(t, err, ErrDecrypt)

	got, err := c.Decode(enc)
	require.NoError(t, err, "the untouched payload still decodes")
	require.True(t, proto.Equal(plain(t), got[0]))
}

// Histories written before encryption was turned on hold plain payloads:
// they decode as they are, mixed with encrypted ones.
func TestPlainPayloadPassesThrough(t *testing.T) {
	_, keys := newKeys(t, "k")
	c := newCodec(t, keys, "k")
	p := plain(t)
	enc, err := c.Encode([]*commonpb.Payload{plain(t)})
	require.NoError(t, err)
	got, err := c.Decode([]*commonpb.Payload{p, enc[0]})
	require.NoError(t, err)
	require.Same(t, p, got[0])
	require.True(t, proto.Equal(p, got[1]))

	var v confirmation
	require.NoError(t, c.DataConverter().FromPayload(p, &v))
	require.Equal(t, sample, v)
}

// Failure messages and stack traces (a ThingSpace fault text in an
// activity's error) are encrypted too, and read back by a process with the
// keys.
func TestFailureMessageEncrypted(t *testing.T) {
	_, keys := newKeys(t, "k")
	fc := newCodec(t, keys, "k").FailureConverter()
	cause := temporal.NewApplicationError("ThingSpace refused the device: "+sample.FaultMessage, "REQUEST_FAILED")

	f := fc.ErrorToFailure(cause)
	require.NotContains(t, f.GetMessage(), sample.FaultMessage)
	require.NotNil(t, f.GetEncodedAttributes())
	wire, err := proto.Marshal(f)
	require.NoError(t, err)
	require.False(t, bytes.Contains(wire, []byte(sample.FaultMessage)), "fault text readable in the failure")
	// The type stays clear: retry policies and the workflows decide on it.
	require.Equal(t, "REQUEST_FAILED", f.GetApplicationFailureInfo().GetType())

	back := fc.FailureToError(f)
	require.Contains(t, back.Error(), sample.FaultMessage)
	var appErr *temporal.ApplicationError
	require.True(t, errors.As(back, &appErr))
	require.Equal(t, "REQUEST_FAILED", appErr.Type())
}

func TestLoadDir(t *testing.T) {
	dir, keys := newKeys(t, "2026-01", "2026-07")
	// What a mounted Kubernetes secret or an editor leaves beside the keys
	// is not a key.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "README"), []byte("keys"), 0o600))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "..data"), 0o700))
	// A key mounted as a symbolic link is read through it.
	other := t.TempDir()
	_, err := WriteNewKey(other, "linked")
	require.NoError(t, err)
	require.NoError(t, os.Symlink(filepath.Join(other, "linked.key"), filepath.Join(dir, "linked.key")))

	c, err := LoadDir(dir, "2026-07")
	require.NoError(t, err)
	require.Equal(t, []string{"2026-01", "2026-07", "linked"}, c.KeyIDs())

	// Encrypted by the loaded key, decrypted by one built from its bytes:
	// the file's content is the key.
	enc, err := c.Encode([]*commonpb.Payload{plain(t)})
	require.NoError(t, err)
	_, err = newCodec(t, map[string][]byte{"2026-07": keys["2026-07"]}, "2026-07").Decode(enc)
	require.NoError(t, err)

	_, err = LoadDir(dir, "2027-01")
	require.ErrorContains(t, err, `the current key "2027-01" is not among the keys (2026-01, 2026-07, linked)`)

	_, err = LoadDir(t.TempDir(), "k")
	require.ErrorContains(t, err, "no *.key file")

	_, err = LoadDir(filepath.Join(dir, "missing"), "k")
	require.Error(t, err)
}

// A key file that does not hold 32 bytes in base64 is refused with its
// name; its content is never quoted (it may be a key pasted wrongly).
func TestLoadDirRefusesBadKeyFile(t *testing.T) {
	for name, content := range map[string]string{
		"short":    "c2VjcmV0LWJ1dC1zaG9ydA==",
		"not-b64":  "this-is-not-base64-but-a-secret-anyway!!",
		"hex":      strings.Repeat("ab", 32),
		"too-long": strings.Repeat("A", 64),
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, name+".key")
			require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
			_, err := LoadDir(dir, name)
			require.ErrorContains(t, err, path)
			require.ErrorContains(t, err, "openssl rand -base64 32")
			require.NotContains(t, err.Error(), content)
		})
	}
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bad id!.key"), []byte(strings.Repeat("A", 43)+"="), 0o600))
	_, err := LoadDir(dir, "bad id!")
	require.ErrorContains(t, err, `key id "bad id!"`)
}

func TestWriteNewKeyNeverOverwrites(t *testing.T) {
	dir := t.TempDir()
	path, err := WriteNewKey(dir, "k")
	require.NoError(t, err)
	before, err := os.ReadFile(path)
	require.NoError(t, err)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	_, err = WriteNewKey(dir, "k")
	require.ErrorIs(t, err, os.ErrExist)
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, before, after)
}

func TestNewRefusesBadKeys(t *testing.T) {
	_, err := New(nil, "k")
	require.ErrorContains(t, err, "no key")
	_, err = New(map[string][]byte{"k": make([]byte, 16)}, "k")
	require.ErrorContains(t, err, "16 bytes, not 32")
}

// plain is a payload as the default data converter writes it.
func plain(t *testing.T) *commonpb.Payload {
	t.Helper()
	p, err := converter.GetDefaultDataConverter().ToPayload(sample)
	require.NoError(t, err)
	return p
}
