// Package payloadcrypt encrypts the payloads the product hands to Temporal
// (workflow and activity inputs and results, signals, queries, markers,
// failure messages and stack traces) with AES-256-GCM, so that a history
// read from the server, its database or the Web UI shows no MSISDN, ICCID
// of a payload, operator name or ThingSpace fault text in clear. Workflow
// ids and search attributes are not payloads: they stay readable (ids
// only; see docs/architecture.md, "Secrets and personal data").
//
// Keys are files (Dir): <id>.key, each holding 32 random bytes in base64.
// A payload is encrypted with the current key, and names that key in its
// metadata; it decrypts with any key loaded, so keys rotate by adding a
// file and making it current, old ones kept while histories need them.
// A payload without the encrypted encoding passes through unchanged: the
// histories written before encryption was turned on still replay.
//
// Server is the codec server the Web UI and `temporal --codec-endpoint`
// call to read encrypted histories.
package payloadcrypt

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/proto"
)

const (
	// Encoding is the metadata "encoding" of an encrypted payload.
	Encoding = "binary/encrypted"
	// MetadataKeyID is the metadata entry naming the key a payload was
	// encrypted with.
	MetadataKeyID = "encryption-key-id"
	// KeyFileSuffix ends the name of every key file: <id>.key.
	KeyFileSuffix = ".key"
	// KeySize is the size of an AES-256 key, in bytes.
	KeySize = 32
)

var (
	// ErrUnknownKey: the payload names a key that is not loaded.
	ErrUnknownKey = errors.New("unknown encryption key")
	// ErrDecrypt: the payload does not decrypt with the key it names
	// (altered, truncated, or the key file's content changed).
	ErrDecrypt = errors.New("payload does not decrypt")
)

// keyIDPattern keeps key ids to names that are safe in a file name, in
// metadata and in messages.
var keyIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Codec is a converter.PayloadCodec encrypting with one current key and
// decrypting with any of its keys. It is safe for concurrent use.
type Codec struct {
	current string
	aeads   map[string]cipher.AEAD
}

var _ converter.PayloadCodec = (*Codec)(nil)

// New is a codec of keys (key id → 32 bytes) encrypting with current.
func New(keys map[string][]byte, current string) (*Codec, error) {
	if len(keys) == 0 {
		return nil, errors.New("payload encryption: no key")
	}
	c := &Codec{current: current, aeads: make(map[string]cipher.AEAD, len(keys))}
	for id, key := range keys {
		if !keyIDPattern.MatchString(id) {
			return nil, fmt.Errorf("payload encryption: key id %q: use letters, digits, '.', '_' or '-' (64 at most)", id)
		}
		if len(key) != KeySize {
			return nil, fmt.Errorf("payload encryption: key %s has %d bytes, not %d (AES-256)", id, len(key), KeySize)
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("payload encryption: key %s: %w", id, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("payload encryption: key %s: %w", id, err)
		}
		c.aeads[id] = aead
	}
	if _, ok := c.aeads[current]; !ok {
		return nil, fmt.Errorf("payload encryption: the current key %q is not among the keys (%s)",
			current, strings.Join(c.KeyIDs(), ", "))
	}
	return c, nil
}

// LoadDir reads every <id>.key file of dir (names starting with a dot
// are skipped: the bookkeeping of a Kubernetes secret volume) and makes
// current the key encrypting. Errors name the file, never its content.
func LoadDir(dir, current string) (*Codec, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("payload encryption keys: %w", err)
	}
	keys := map[string][]byte{}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || !strings.HasSuffix(name, KeyFileSuffix) {
			continue
		}
		path := filepath.Join(dir, name)
		// Stat, not the entry's type: a mounted secret is a symbolic link.
		if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("payload encryption key %s: not a readable regular file", path)
		}
		key, err := readKeyFile(path)
		if err != nil {
			return nil, err
		}
		keys[strings.TrimSuffix(name, KeyFileSuffix)] = key
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("payload encryption keys: no *%s file in %s", KeyFileSuffix, dir)
	}
	c, err := New(keys, current)
	if err != nil {
		return nil, fmt.Errorf("%w (keys from %s)", err, dir)
	}
	return c, nil
}

func readKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("payload encryption key: %w", err)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) != KeySize {
		return nil, fmt.Errorf("payload encryption key %s: must hold %d random bytes in base64 "+
			"(openssl rand -base64 %d)", path, KeySize, KeySize)
	}
	return key, nil
}

// WriteNewKey writes a new random key as dir/<id>.key (mode 0600; an
// existing file is never overwritten) and returns its path.
func WriteNewKey(dir, id string) (string, error) {
	if !keyIDPattern.MatchString(id) {
		return "", fmt.Errorf("key id %q: use letters, digits, '.', '_' or '-' (64 at most)", id)
	}
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("new payload key: %w", err)
	}
	path := filepath.Join(dir, id+KeyFileSuffix)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("new payload key: %w", err)
	}
	if _, err := f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n"); err != nil {
		_ = f.Close()
		return "", fmt.Errorf("new payload key %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("new payload key %s: %w", path, err)
	}
	return path, nil
}

// CurrentKeyID is the id of the key new payloads are encrypted with.
func (c *Codec) CurrentKeyID() string { return c.current }

// KeyIDs are the ids of every key loaded, sorted.
func (c *Codec) KeyIDs() []string {
	return slices.Sorted(maps.Keys(c.aeads))
}

// additionalData binds a ciphertext to the key id its metadata names.
func additionalData(keyID string) []byte { return []byte(Encoding + "\x00" + keyID) }

// Encode encrypts each payload, metadata included, with the current key:
// the result's data is the nonce followed by the sealed payload.
func (c *Codec) Encode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	aead := c.aeads[c.current]
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		plain, err := proto.Marshal(p)
		if err != nil {
			return payloads, fmt.Errorf("encrypt payload: %w", err)
		}
		nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
		if _, err := rand.Read(nonce); err != nil {
			// Failing the task, not the workflow: the next attempt may have entropy.
			return payloads, converter.NewWorkflowTaskFailureError(fmt.Errorf("encrypt payload: %w", err))
		}
		out[i] = &commonpb.Payload{
			Metadata: map[string][]byte{
				converter.MetadataEncoding: []byte(Encoding),
				MetadataKeyID:              []byte(c.current),
			},
			Data: aead.Seal(nonce, nonce, plain, additionalData(c.current)),
		}
	}
	return out, nil
}

// Decode decrypts each encrypted payload; others pass through unchanged.
// A payload naming a key not loaded, or not decrypting, fails the whole
// call; inside a workflow task it fails the task (retried once the key is
// deployed), not the workflow.
func (c *Codec) Decode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		if string(p.GetMetadata()[converter.MetadataEncoding]) != Encoding {
			out[i] = p
			continue
		}
		plain, err := c.open(p)
		if err != nil {
			return payloads, converter.NewWorkflowTaskFailureError(err)
		}
		dec := &commonpb.Payload{}
		if err := proto.Unmarshal(plain, dec); err != nil {
			return payloads, converter.NewWorkflowTaskFailureError(fmt.Errorf("decrypted payload: %w", err))
		}
		out[i] = dec
	}
	return out, nil
}

func (c *Codec) open(p *commonpb.Payload) ([]byte, error) {
	id := string(p.GetMetadata()[MetadataKeyID])
	aead, ok := c.aeads[id]
	if !ok {
		if !keyIDPattern.MatchString(id) {
			// Not quoted back as is: it came from the payload.
			return nil, fmt.Errorf("%w: the payload's %s is missing or malformed", ErrUnknownKey, MetadataKeyID)
		}
		return nil, fmt.Errorf("%w %q: the payload was encrypted with a key not loaded here (keys: %s); "+
			"add its %s%s file to the keys folder", ErrUnknownKey, id, strings.Join(c.KeyIDs(), ", "), id, KeyFileSuffix)
	}
	data := p.GetData()
	if len(data) < aead.NonceSize()+aead.Overhead() {
		return nil, fmt.Errorf("%w with key %q: too short", ErrDecrypt, id)
	}
	plain, err := aead.Open(nil, data[:aead.NonceSize()], data[aead.NonceSize():], additionalData(id))
	if err != nil {
		return nil, fmt.Errorf("%w with key %q: altered, or not encrypted with this key's content", ErrDecrypt, id)
	}
	return plain, nil
}

// DataConverter is the SDK's default data converter with this codec
// applied to every payload it produces and reads.
func (c *Codec) DataConverter() converter.DataConverter {
	return converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), c)
}

// FailureConverter encodes failures with DataConverter and moves their
// messages and stack traces into an encrypted payload: a ThingSpace fault
// text in an activity's error is as personal as its input.
func (c *Codec) FailureConverter() converter.FailureConverter {
	return temporal.NewDefaultFailureConverter(temporal.DefaultFailureConverterOptions{
		DataConverter:          c.DataConverter(),
		EncodeCommonAttributes: true,
	})
}
