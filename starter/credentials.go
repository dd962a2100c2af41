package main

import (
	"context"
	"fmt"
	"time"

	"github.com/iot-ops/tsbulk/thingspace"
)

// credentialsReset removes the latched refusals of ThingSpace credentials
// (a wrong password, a wrong client secret, a locked account): until then
// every worker refuses to send a token request or login, since five failed
// logins lock the Verizon account. Reset once the credentials (or the
// account, with Verizon) are corrected: the next worker to authenticate
// tries them once, and a new refusal latches again.
func (c *cli) credentialsReset(ctx context.Context, t *target) error {
	store, err := c.db(ctx)
	if err != nil {
		return err
	}
	var only []thingspace.CredentialKey
	if t.tenant != "" {
		// Only that tenant's credentials: another tenant's refusal stays
		// until it is corrected too.
		tn, err := c.cfg.Tenant(t.tenant)
		if err != nil {
			return &exitError{2, err}
		}
		only = append(only, thingspace.CredentialKey{BaseURL: tn.ThingSpace.BaseURL, ClientID: tn.ThingSpace.ClientID,
			Username: tn.ThingSpace.Username})
	}
	cleared, err := store.ResetCredentialLatches(ctx, t.as, t.reason, only...)
	if err != nil {
		return err
	}
	if len(cleared) == 0 {
		if t.tenant != "" {
			fmt.Fprintf(c.out, "tenant %s's ThingSpace credentials were not latched as refused; nothing to reset\n", t.tenant)
			return nil
		}
		fmt.Fprintln(c.out, "no ThingSpace credentials were latched as refused; nothing to reset")
		return nil
	}
	for _, l := range cleared {
		what := "the M2M login (username or password)"
		if l.Refusal.Op == thingspace.OpOAuth {
			what = "the OAuth client (id or secret)"
		}
		fmt.Fprintf(c.out, "reset: %s refused at %s (%s)\n", what, l.Refusal.At.UTC().Format(time.RFC3339),
			l.Refusal.Code)
	}
	fmt.Fprintln(c.out, "the workers will try the credentials again at their next ThingSpace call")
	return nil
}
