// Package webui checks what an operator sees in the Temporal Web UI, in a
// real browser: headless Chromium driven over the DevTools protocol
// (chromedp) against the dev server's own UI.
package webui

import (
	"context"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"

	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/db/dbtest"
	"github.com/iot-ops/tsbulk/harness/stack"
	tssim "github.com/iot-ops/tsbulk/harness/thingspacesim"
	"github.com/iot-ops/tsbulk/submission"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// ScreenshotEnv names a file the test also writes its screenshot to
// (scripts/webui-screenshot.sh makes README's picture with it).
const ScreenshotEnv = "TSBULK_WEBUI_SCREENSHOT"

// A finished bulk change is found in the Web UI by what it is: its page
// shows the summary the submission gave it ("suspend 3 devices · account
// … · submitted by …"), not only bulk-change/<uuid>.
func TestWebUIShowsTheBulkChangeSummary(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: this test starts a Temporal dev server with its Web UI, a worker and a browser")
	}
	browser := chromium(t)
	cli, err := stack.TemporalCLI()
	if err != nil {
		t.Skipf("no Temporal CLI: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	uiPort := freePort(t)
	dev, err := testsuite.StartDevServer(ctx, testsuite.DevServerOptions{
		ExistingPath:  cli,
		EnableUI:      true,
		UIPort:        strconv.Itoa(uiPort),
		ClientOptions: &client.Options{Namespace: "default"},
		LogLevel:      "error",
		ExtraArgs: append([]string{"--dynamic-config-value", "system.forceSearchAttributesCacheRefreshOnRead=true"},
			api.DevServerSearchAttributeArgs()...),
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = dev.Stop() })

	s, err := stack.Start(ctx, stack.Options{
		DatabaseURL:     dbtest.NewURL(t),
		TemporalAddress: dev.FrontendHostPort(),
		ThingSpace:      tssim.Config{CompletionDelay: 100 * time.Millisecond, CallbackRetryInterval: 500 * time.Millisecond, Seed: 3},
		Config:          func(c *config.Config) { c.Bulk.CallbackTimeout = 10 * time.Second },
	})
	require.NoError(t, err)
	t.Cleanup(s.Close)
	_, err = s.StartWorker()
	require.NoError(t, err)

	devs := tssim.GenerateDevices(3, "8914800333", "active")
	require.NoError(t, s.TS.Seed(devs...))
	data := "iccid,operation\n"
	for _, d := range devs {
		data += d.ICCID + ",suspend\n"
	}
	req, err := submission.ForTenant(s.Config, "", "")
	require.NoError(t, err)
	req.File, req.Data, req.Format, req.SubmittedBy = "fleet-suspend.csv", []byte(data), "csv", "alice"
	res, err := (&submission.Submitter{Store: s.Store, Temporal: s.Client}).Submit(ctx, req)
	require.NoError(t, err)
	var out api.BulkChangeResult
	require.NoError(t, s.Client.GetWorkflow(ctx, res.WorkflowID, "").Get(ctx, &out))
	require.Equal(t, 3, out.Processed)

	want := "suspend 3 devices · account " + s.Config.ThingSpace.Account + " · submitted by alice"
	page := "http://127.0.0.1:" + strconv.Itoa(uiPort) + "/namespaces/default/workflows/" +
		url.PathEscape(res.WorkflowID)
	shot := look(t, browser, page, want)
	path := filepath.Join(t.TempDir(), "bulk-change.png")
	require.NoError(t, os.WriteFile(path, shot, 0o644))
	t.Logf("screenshot: %s", path)
	if out := os.Getenv(ScreenshotEnv); out != "" {
		require.NoError(t, os.WriteFile(out, shot, 0o644))
	}
}

// look opens page in headless Chromium, waits until its text holds want
// (the UI renders in the browser, after the page loads), and returns a
// screenshot (PNG).
func look(t *testing.T, browser, page, want string) []byte {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1440, 900), chromedp.UserDataDir(t.TempDir()))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	bctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel := context.WithTimeout(bctx, 2*time.Minute)
	defer cancel()
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(page)))
	quoted := strconv.Quote(want)
	_, err := chromedp.Run(ctx, chromedp.Poll[bool]("document.body.innerText.includes("+quoted+")",
		chromedp.WithPollingTimeout(90*time.Second)))
	if err != nil {
		text, _ := chromedp.Run(ctx, chromedp.Text("body"))
		t.Fatalf("the Web UI page %s never showed %q: %v\npage text:\n%s", page, want, err, text)
	}
	// The summary and details are on the page's User Metadata tab: open
	// it for the picture.
	_, err = chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => {
		const tab = [...document.querySelectorAll('a,button')].find(e => e.innerText.trim().startsWith('User Metadata'));
		if (tab) { tab.click(); return true; }
		return false;
	})()`))
	require.NoError(t, err)
	_, err = chromedp.Run(ctx, chromedp.Poll[bool]("location.pathname.endsWith('/user-metadata')",
		chromedp.WithPollingTimeout(30*time.Second)))
	require.NoError(t, err, "the User Metadata tab of %s", page)
	// It renders the summary and details as markdown in frames of their own.
	time.Sleep(2 * time.Second)
	shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	require.NoError(t, err)
	return shot
}

// chromium finds the browser, installing Debian's package when it is
// missing and this is a Debian machine run as root; skips otherwise,
// saying why.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if _, err := exec.LookPath("apt-get"); err != nil || os.Geteuid() != 0 {
		t.Skip("no Chromium, and it cannot be installed here (needs apt-get as root): install Debian's chromium package")
	}
	for _, args := range [][]string{{"update", "-qq"}, {"install", "-y", "-qq", "chromium"}} {
		if out, err := exec.Command("apt-get", args...).CombinedOutput(); err != nil {
			t.Skipf("no Chromium: apt-get %v failed: %v\n%s", args, err, out)
		}
	}
	p, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("no Chromium after installing Debian's chromium package")
	}
	return p
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
