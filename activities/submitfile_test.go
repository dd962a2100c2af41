package activities

import (
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Only regular files inside an inbox directory may be named; .., absolute
// paths elsewhere, links pointing out, directories and FIFOs are refused,
// each saying why, and none of them hangs.
func TestOpenInInbox(t *testing.T) {
	inbox, other := t.TempDir(), t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(inbox, "ok.csv"), []byte("iccid\n"), 0o600))
	require.NoError(t, os.MkdirAll(filepath.Join(inbox, "team"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(inbox, "team", "nested.csv"), []byte("iccid\n"), 0o600))
	require.NoError(t, os.Symlink("team/nested.csv", filepath.Join(inbox, "inside.csv")))
	require.NoError(t, os.WriteFile(filepath.Join(other, "secret.csv"), []byte("iccid\n"), 0o600))
	require.NoError(t, os.Symlink(filepath.Join(other, "secret.csv"), filepath.Join(inbox, "link.csv")))
	require.NoError(t, os.Symlink(other, filepath.Join(inbox, "out")))
	require.NoError(t, os.Mkdir(filepath.Join(inbox, "dir.csv"), 0o700))
	require.NoError(t, syscall.Mkfifo(filepath.Join(inbox, "fifo.csv"), 0o600))

	for _, name := range []string{"ok.csv", "team/nested.csv", "inside.csv", filepath.Join(inbox, "ok.csv")} {
		f, err := openInInbox(name, []string{inbox})
		require.NoError(t, err, name)
		body, err := io.ReadAll(f.file)
		require.NoError(t, err)
		require.Equal(t, "iccid\n", string(body))
		f.Close()
	}
	for name, reason := range map[string]string{
		"../" + filepath.Base(other) + "/secret.csv": ".. is not allowed",
		filepath.Join(other, "secret.csv"):           "not inside an inbox",
		"link.csv":                                   "not inside an inbox",
		"out/secret.csv":                             "not inside an inbox",
		"missing.csv":                                "not inside an inbox",
		"team/../ok.csv":                             ".. is not allowed",
		"dir.csv":                                    "is a directory",
		"fifo.csv":                                   "is a named pipe (FIFO)",
	} {
		done := make(chan error, 1)
		go func() {
			f, err := openInInbox(name, []string{inbox})
			if err == nil {
				f.Close()
			}
			done <- err
		}()
		select {
		case err := <-done:
			require.ErrorContains(t, err, reason, name)
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: opening it hangs", name)
		}
	}
	_, err := openInInbox("ok.csv", nil)
	require.ErrorContains(t, err, "submission.inbox_dirs")
}

// A file of the inbox replaced by a link out of it while it is being
// opened never lets the file outside be read: the open itself, not a check
// before it, stays inside the inbox.
func TestOpenInInboxLinkSwappedIn(t *testing.T) {
	inbox, other := t.TempDir(), t.TempDir()
	target := filepath.Join(inbox, "devices.csv")
	outside := filepath.Join(other, "devices.csv")
	require.NoError(t, os.WriteFile(outside, []byte("outside\n"), 0o600))
	require.NoError(t, os.WriteFile(target, []byte("inside\n"), 0o600))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tmpFile, tmpLink := filepath.Join(inbox, ".file"), filepath.Join(inbox, ".link")
		for {
			select {
			case <-stop:
				return
			default:
			}
			// Renames replace the name atomically: it is always there,
			// a file one moment and a link out the next.
			_ = os.WriteFile(tmpFile, []byte("inside\n"), 0o600)
			_ = os.Rename(tmpFile, target)
			_ = os.Symlink(outside, tmpLink)
			_ = os.Rename(tmpLink, target)
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	opened := 0
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		f, err := openInInbox("devices.csv", []string{inbox})
		if err != nil {
			continue
		}
		body, _ := io.ReadAll(f.file)
		f.Close()
		require.NotEqual(t, "outside\n", string(body), "a file outside the inbox was read")
		opened++
	}
	require.Positive(t, opened, "the file was opened while it was a file")
}
