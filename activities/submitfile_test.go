package activities

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// Only files inside an inbox directory may be named; .., absolute paths
// elsewhere and links pointing out are refused.
func TestInInbox(t *testing.T) {
	inbox, other := t.TempDir(), t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(inbox, "ok.csv"), []byte("iccid\n"), 0o600))
	require.NoError(t, os.MkdirAll(filepath.Join(inbox, "team"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(inbox, "team", "nested.csv"), []byte("iccid\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(other, "secret.csv"), []byte("iccid\n"), 0o600))
	require.NoError(t, os.Symlink(filepath.Join(other, "secret.csv"), filepath.Join(inbox, "link.csv")))

	for _, name := range []string{"ok.csv", "team/nested.csv", filepath.Join(inbox, "ok.csv")} {
		p, err := inInbox(name, []string{inbox})
		require.NoError(t, err, name)
		require.FileExists(t, p)
	}
	for _, name := range []string{"../" + filepath.Base(other) + "/secret.csv", filepath.Join(other, "secret.csv"), "link.csv",
		"missing.csv", "team/../ok.csv"} {
		_, err := inInbox(name, []string{inbox})
		require.Error(t, err, name)
	}
	_, err := inInbox("ok.csv", nil)
	require.ErrorContains(t, err, "submission.inbox_dirs")
}
