package app

import (
	"errors"
	"fmt"

	"github.com/iot-ops/tsbulk/db"
)

// Explain turns start-up failures operators can fix into advice.
func Explain(err error) string {
	var unreachable *db.UnreachableError
	if errors.As(err, &unreachable) {
		return fmt.Sprintf("%v\n\nPostgreSQL must be running and reachable (setting database.url, or TSBULK_DATABASE_URL).\n"+
			"On a development machine start it with:\n    pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start", err)
	}
	return err.Error()
}
