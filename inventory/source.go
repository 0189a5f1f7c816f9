package inventory

import (
	"context"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
)

// Source is where the facts that judge keys come from: the enforcer's
// database and the tokens. Live reads the real ones; tests of the packages
// that decide (backup, hooks, check) hand in a fake
// (inventory/inventorytest), as hsmcheck's own tests do one level down.
type Source interface {
	// State reads the enforcer's database, within ctx.
	State(ctx context.Context) (*enforcer.State, error)
	// ZoneState reads one zone of the enforcer's database, its keys and
	// every policy (enforcer.DB.ReadZone), within ctx: no zones when the
	// enforcer has no such zone.
	ZoneState(ctx context.Context, zone string) (*enforcer.State, error)
	// Tokens reads tokens, each once, and returns their results in order;
	// a token that cannot be read has its error in its Result.
	Tokens(ctx context.Context, tokens []hsmcheck.Token, req hsmcheck.Request) []hsmcheck.Result
	// String names the database for messages, never with a password.
	String() string
}

// Live is the real source: the enforcer's datastore, and the tokens read
// in child processes.
type Live struct {
	Datastore enforcer.Datastore
	Reader    hsmcheck.Reader
}

// State reads the enforcer's datastore.
func (l Live) State(ctx context.Context) (*enforcer.State, error) {
	return enforcer.ReadDatastore(ctx, l.Datastore)
}

// ZoneState reads one zone of the enforcer's datastore.
func (l Live) ZoneState(ctx context.Context, zone string) (*enforcer.State, error) {
	return enforcer.ReadDatastoreZone(ctx, l.Datastore, zone)
}

// Tokens reads the tokens through l.Reader.
func (l Live) Tokens(ctx context.Context, tokens []hsmcheck.Token, req hsmcheck.Request) []hsmcheck.Result {
	return l.Reader.Read(ctx, tokens, req)
}

func (l Live) String() string { return l.Datastore.String() }
