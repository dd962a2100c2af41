package integration

import (
	"bytes"
	"context"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/proxy"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/harness/nettest"
	"github.com/iot-ops/tsbulk/harness/stack"
	tssim "github.com/iot-ops/tsbulk/harness/thingspacesim"
	"github.com/iot-ops/tsbulk/payloadcrypt"
	"github.com/iot-ops/tsbulk/submission"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// TestPayloadsEncryptedEndToEnd runs a small activation bulk change (PPU,
// billing, one device ThingSpace does not know) with payload encryption
// on, then reads the histories from the server as anyone with namespace
// or Web UI access would: without the keys no MSISDN, ICCID of a payload,
// operator name or fault text is readable; through the codec server (as
// the Web UI and `temporal --codec-endpoint` read them) they all are; and
// `worker replay` replays them with the keys only.
func TestPayloadsEncryptedEndToEnd(t *testing.T) {
	s := newStackWithWorker(t, stack.Options{
		EncryptPayloads: true,
		ThingSpace:      simConfig(300*time.Millisecond, 500*time.Millisecond, 20),
		Config:          func(c *config.Config) { c.Bulk.CallbackTimeout = 5 * time.Second },
	})
	fresh := tssim.GenerateDevices(3, "8914800020", "preactive")
	unknown := tssim.GenerateDevices(1, "8914800021", "")
	require.NoError(t, s.TS.Seed(fresh...))
	var rows []row
	for i, d := range append(append([]tssim.DeviceSeed{}, fresh...), unknown...) {
		rows = append(rows, activationRow(d, i, true))
	}
	const operator = "Zelda Quartermain"
	sub := &submission.Submitter{Store: s.Store, Temporal: s.Client}
	res, err := sub.Submit(context.Background(), submission.Request{
		File: writeCSV(t, activationColumns, rows), Account: s.Config.ThingSpace.Account,
		BatchSize: s.Config.Bulk.BatchSize, Options: options(s), SubmittedBy: operator,
		ActionsPerLinePerDay: s.Config.Limits.ActionsPerLinePerDay,
	})
	require.NoError(t, err)
	out := waitBulk(t, s, res, 5*time.Minute)
	require.Equal(t, 1, out.Errors, "the device ThingSpace does not know")

	got := results(t, s, res.ID)
	var msisdns []string
	for _, d := range fresh {
		r := got[d.ICCID]
		require.EqualValues(t, change.Processed, r.Status, "%s: %s %s", d.ICCID, r.ErrorCode, r.ErrorMessage)
		require.NotEmpty(t, r.MSISDN)
		msisdns = append(msisdns, r.MSISDN)
	}
	fault := got[unknown[0].ICCID]
	require.EqualValues(t, change.Failed, fault.Status)
	require.NotEmpty(t, fault.ErrorMessage, "ThingSpace's fault text")
	t.Logf("fault text: %q", fault.ErrorMessage)

	device := api.DeviceChangeWorkflowID(res.ID, fresh[0].ICCID)
	failed := api.DeviceChangeWorkflowID(res.ID, unknown[0].ICCID)
	workflowIDs := []string{res.WorkflowID, device, failed}
	personal := append([]string{operator, fault.ErrorMessage, "Byron", "Analytical Way"}, msisdns...)

	// What the server holds, read by a client without the keys.
	bare, err := client.NewClientFromExisting(s.Client, client.Options{Namespace: "default"})
	require.NoError(t, err)
	defer bare.Close()
	payloads := 0
	for _, id := range workflowIDs {
		h := rawHistory(t, bare, id)
		text, n := payloadText(t, h)
		payloads += n
		all := historyJSON(t, h) + text
		for _, v := range personal {
			require.NotContains(t, all, v, "readable in the raw history of %s", id)
		}
		for _, d := range append(append([]tssim.DeviceSeed{}, fresh...), unknown...) {
			require.NotContains(t, text, d.ICCID, "ICCID readable in a payload of %s", id)
		}
		requireAllEncrypted(t, h, id)
	}
	require.Greater(t, payloads, 10, "the histories carry payloads")

	// `temporal workflow show` without a codec shows the same: nothing.
	cli, err := stack.TemporalCLI()
	require.NoError(t, err)
	show := func(id string, extra ...string) *historypb.History {
		args := append([]string{"workflow", "show", "--address", s.Config.Temporal.Address,
			"--namespace", s.Config.Temporal.Namespace, "--workflow-id", id, "--output", "json"}, extra...)
		cmd := exec.Command(cli, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		b, err := cmd.Output()
		require.NoError(t, err, "temporal workflow show %s: %s", id, stderr.String())
		h, err := client.HistoryFromJSON(bytes.NewReader(b), client.HistoryJSONOptions{})
		require.NoError(t, err)
		return h
	}
	plainText, _ := payloadText(t, show(device))
	for _, v := range append([]string{fresh[0].ICCID}, msisdns...) {
		require.NotContains(t, plainText, v)
	}

	// Through the codec server, with its token, everything is readable.
	const token = "codec-token-for-the-end-to-end-test-0123456789"
	endpoint := startCodecServer(t, s, token)
	codec := []string{"--codec-endpoint", endpoint, "--codec-auth", "Bearer " + token}
	decoded := map[string]string{}
	for _, id := range workflowIDs {
		h := show(id, codec...)
		text, _ := payloadText(t, h)
		decoded[id] = text + historyJSON(t, h)
	}
	require.Contains(t, decoded[res.WorkflowID], operator, "the operator in the bulk change's input")
	require.Contains(t, decoded[device], fresh[0].ICCID, "the ICCID in the device change's input")
	require.Contains(t, decoded[device], got[fresh[0].ICCID].MSISDN, "the MSISDN of the confirmation")
	require.Contains(t, decoded[failed], fault.ErrorMessage, "ThingSpace's fault text")

	// Without the token the codec server decodes nothing.
	cmd := exec.Command(cli, "workflow", "show", "--address", s.Config.Temporal.Address, "--namespace", "default",
		"--workflow-id", device, "--output", "json", "--codec-endpoint", endpoint)
	b, _ := cmd.CombinedOutput()
	for _, v := range msisdns {
		require.NotContains(t, string(b), v)
	}

	// `worker replay` replays the encrypted history with the keys, and
	// says it cannot read it without them.
	replayOut, err := workerCommand(s.Env(), "replay", "--workflow-id", device)
	require.NoError(t, err, replayOut)
	require.Contains(t, replayOut, "OK: workflow "+device)
	noKeys := append(s.Env(), config.EnvName("temporal.codec.keys_dir")+"=",
		config.EnvName("temporal.codec.current_key_id")+"=")
	replayOut, err = workerCommand(noKeys, "replay", "--workflow-id", device)
	require.Error(t, err)
	require.Contains(t, replayOut, "CANNOT READ")
	require.NotContains(t, replayOut, "NONDETERMINISM")
}

// startCodecServer runs `worker codec-server` with the stack's keys and
// returns its URL.
func startCodecServer(t *testing.T, s *stack.Stack, token string) string {
	t.Helper()
	addr := nettest.FreeAddr(t)
	cmd := exec.Command(filepath.Join(binDir, "worker"), "codec-server")
	cmd.Env = append(s.Env(), config.EnvName("codec_server.listen")+"="+addr,
		config.EnvName("codec_server.token")+"="+token)
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	url := "http://" + addr
	require.Eventually(t, func() bool {
		resp, err := http.Get(url + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 100*time.Millisecond, "codec server: %s", &log)
	return url
}

func workerCommand(env []string, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(binDir, "worker"), args...)
	cmd.Env = env
	b, err := cmd.CombinedOutput()
	return string(b), err
}

func rawHistory(t *testing.T, c client.Client, workflowID string) *historypb.History {
	t.Helper()
	h := &historypb.History{}
	it := c.GetWorkflowHistory(context.Background(), workflowID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		require.NoError(t, err)
		h.Events = append(h.Events, e)
	}
	require.NotEmpty(t, h.Events, workflowID)
	return h
}

// historyJSON is the history as JSON: its strings outside payloads (ids,
// failure messages) as they are, payloads in base64.
func historyJSON(t *testing.T, h *historypb.History) string {
	t.Helper()
	b, err := protojson.Marshal(h)
	require.NoError(t, err)
	return string(b)
}

// payloadText is every payload's metadata and data as bytes (what base64
// hides from a plain search of the JSON), search attributes apart, and the
// number of payloads.
func payloadText(t *testing.T, h *historypb.History) (string, int) {
	t.Helper()
	var b strings.Builder
	n := 0
	require.NoError(t, proxy.VisitPayloads(context.Background(), h, proxy.VisitPayloadsOptions{
		SkipSearchAttributes: true,
		Visitor: func(_ *proxy.VisitPayloadsContext, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
			for _, p := range ps {
				n++
				for k, v := range p.GetMetadata() {
					b.WriteString(k + "=" + string(v) + "\n")
				}
				b.Write(p.GetData())
				b.WriteString("\n")
			}
			return ps, nil
		},
	}))
	return b.String(), n
}

// requireAllEncrypted fails on any payload of h in clear, search
// attributes apart (ids, indexed by the server).
func requireAllEncrypted(t *testing.T, h *historypb.History, workflowID string) {
	t.Helper()
	require.NoError(t, proxy.VisitPayloads(context.Background(), h, proxy.VisitPayloadsOptions{
		SkipSearchAttributes: true,
		Visitor: func(_ *proxy.VisitPayloadsContext, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
			for _, p := range ps {
				require.Equal(t, payloadcrypt.Encoding, string(p.GetMetadata()[converter.MetadataEncoding]),
					"a payload of %s in clear: %s", workflowID, p.GetData())
			}
			return ps, nil
		},
	}))
}
