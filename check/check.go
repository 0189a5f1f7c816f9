package check

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ods-keyguard/ods-keyguard/backup"
	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/hooks"
	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/inventory"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/parent"
	"github.com/ods-keyguard/ods-keyguard/publish"
	"github.com/ods-keyguard/ods-keyguard/rules"
	"github.com/ods-keyguard/ods-keyguard/servedzone"
)

// CheckOptions are check's options, parsed.
type CheckOptions struct {
	At              time.Time // evaluate as of (--at); the run itself is now
	Warn, Crit      Range     // spare backed-up keys per pool
	Interval, Grace time.Duration
	NewZones        map[string]int
	// TokenMaxAge is [check] token_max_age: the tokens come from the
	// record of ods-keyguard scan, no older than that (0: read live).
	TokenMaxAge time.Duration
}

// Sources are where check reads the facts.
type Sources struct {
	Source inventory.Source // the enforcer's database and the tokens
	Tokens []hsmcheck.Token
	// OpenLedger opens the records read-only; Check closes them.
	OpenLedger func(context.Context) (*ledger.Ledger, error)
	// Ledger names where the records are, for a message that says what
	// did not answer (ledger.Options.String).
	Ledger        string
	RequireBackup map[string]bool
	Parent        parent.Config
	// Served is [zone]: where the zones are served, read to compare with
	// the enforcer and the HSMs.
	Served servedzone.Config
	// PublishState is state_dir, where the publish gate keeps its
	// alerts; "" when [publish] is not configured.
	PublishState string
}

// Finding is one problem, in the plugin's terms: what it is about as
// fields, which the first line is made of, and its text for people.
type Finding struct {
	State State `json:"state"`
	// Category is the rule or the part it is about: "rule 1", "rule 2",
	// "presence", "token", "pool", "backup", "ceremony", "state", "hook",
	// "parent", "zone".
	Category string `json:"category"`
	Zone     string `json:"zone,omitempty"`
	Key      string `json:"key,omitempty"` // the key's locator
	// Subject is the pool, repository, token, ceremony or file it is
	// about, where it is about one.
	Subject string `json:"subject,omitempty"`
	// Spare is a pool's spare backed-up keys (rule 2).
	Spare *int   `json:"spare,omitempty"`
	Text  string `json:"text"`
	// Brief is the clause the first line gives it, where it is not
	// made from the fields above.
	Brief string `json:"-"`
}

// Report is check's verdict, for every rendering. A figure that was not
// measured in this run is nil (or absent), never a zero.
type Report struct {
	State    State               `json:"state"`
	Summary  string              `json:"summary"`
	At       time.Time           `json:"at"`  // the time evaluated
	Ran      time.Time           `json:"ran"` // when this run was
	Findings []Finding           `json:"findings"`
	Keys     *int                `json:"key_count"`
	Unbacked []rules.Unbacked    `json:"unbacked_in_use"`
	Missing  *int                `json:"missing_keys"`
	Withheld *int                `json:"withheld_submissions"`
	Pools    []rules.Pool        `json:"pools"`
	Backups  []rules.Age         `json:"backups"`
	Problems []inventory.Problem `json:"presence_problems"`
	// TokensRecorded is when the oldest token contents judged were read,
	// where they come from the record of ods-keyguard scan; nil when every
	// token was read in this run.
	TokensRecorded *time.Time `json:"tokens_recorded,omitempty"`
	// Publish is the publish gate's open problems on this host; nil when
	// the gate is not configured or could not be read.
	Publish []publish.Alert `json:"publish,omitempty"`
	// Measured is false when the run could not determine the state at all:
	// then only the verdict and the reason are worth anything.
	Measured bool         `json:"measured"`
	Options  CheckOptions `json:"-"`
}

// Unknown is the verdict of a run that could not determine the state.
func Unknown(opt CheckOptions, reason string) *Report {
	return &Report{State: StateUnknown, Summary: human.OneLine(reason), At: opt.At, Ran: time.Now().UTC(), Findings: []Finding{},
		Unbacked: []rules.Unbacked{}, Pools: []rules.Pool{}, Backups: []rules.Age{}, Problems: []inventory.Problem{}, Options: opt}
}

// stage is what a check is waiting for, so that one out of time can say
// which part did not answer.
type stage struct {
	mu   sync.Mutex
	what string
}

func (s *stage) set(what string) {
	s.mu.Lock()
	s.what = what
	s.mu.Unlock()
}

func (s *stage) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.what
}

// check reads everything within ctx and returns the verdict on both rules
// of the procedure, the presence of every key on its tokens, the backup
// age, the ceremonies, and the DS guard (with the parent's DS where
// [parent] is configured); at says what it is waiting for.
func check(ctx context.Context, src Sources, opt CheckOptions, at *stage) *Report {
	// The records first: quick, and not to be starved by a token that hangs.
	ledgerName := src.Ledger
	if ledgerName == "" {
		ledgerName = "the ledger"
	}
	at.set(ledgerName)
	l, err := src.OpenLedger(ctx)
	if err != nil {
		return Unknown(opt, err.Error())
	}
	defer l.Close()
	store, err := l.Ceremonies(ctx)
	if err != nil {
		return Unknown(opt, err.Error())
	}
	book, err := l.DS(ctx)
	if err != nil {
		return Unknown(opt, err.Error())
	}
	at.set(fmt.Sprintf("the enforcer database %s or the tokens (%s)", src.Source, tokenNames(src.Tokens)))
	var snap *inventory.Snapshot
	_, recorded := src.Source.(inventory.Recorded)
	if !recorded && !src.Served.Enabled() && !src.Parent.Enabled() {
		// Nothing in the request depends on the database: both are read
		// at once.
		snap, err = inventory.Take(ctx, src.Source, src.Tokens, hsmcheck.Request{NoPublic: true})
	} else {
		// Every key the enforcer has is expected on its tokens: a source
		// that answers from a record reads those it lacks from the tokens.
		snap, err = inventory.TakeFor(ctx, src.Source, src.Tokens, func(st *enforcer.State) hsmcheck.Request {
			req := hsmcheck.Request{NoPublic: true, Expect: allKeys(st)}
			switch {
			case src.Served.Enabled():
				// The served DNSKEYs are matched to the enforcer's keys
				// by their public keys: every key of every zone's.
				req.PublicIDs = zoneKeys(st)
			case src.Parent.Enabled():
				// A DS at the parent counts as a key's only by digest:
				// the public keys of the KSKs and CSKs are read too.
				req.PublicIDs = hooks.SEPKeys(st)
			}
			return req
		})
	}
	if err != nil {
		return Unknown(opt, err.Error())
	}
	if src.Parent.Enabled() {
		at.set(strings.TrimSpace("the parent's servers " + strings.Join(src.Parent.Nameservers, " ") + " " + src.Parent.Resolver))
	}
	servedc := make(chan map[string][]servedzone.Answer, 1)
	go func() { servedc <- servedzone.Read(ctx, src.Served, snap.State.ZoneNames()) }()
	answers := parent.ByZone(ctx, src.Parent, append(snap.State.ZoneNames(), hooks.GoneZones(snap.State, book)...))
	if src.Served.Enabled() {
		at.set("the zones' servers " + strings.Join(src.Served.Nameservers, " "))
	}
	zones := <-servedc
	at.set("")
	f := Facts{Snapshot: snap, Store: store, Book: book, Parent: answers, RequireBackup: src.RequireBackup,
		Exposed: l.Exposed(), Writer: l.LockHolder(ctx), Served: zones, ServedWarn: src.Served.Warn}
	if src.PublishState != "" {
		f.PublishRead = true
		f.Publish, f.PublishErr = publish.Alerts(src.PublishState)
	}
	return Evaluate(f, opt)
}

// Run reads everything and judges it within timeout, as a monitoring
// plugin must answer (naming what did not answer in time): the
// reads end at 70% of it and the verdict comes by 90%, once whatever did
// not answer has been killed and reaped. Whatever goes wrong, out of time
// included, is an UNKNOWN verdict, never a hang.
func Run(ctx context.Context, timeout time.Duration, src Sources, opt CheckOptions) *Report {
	budget := timeout - timeout/10
	ctx, cancel := context.WithTimeout(ctx, timeout*7/10)
	defer cancel()
	at := &stage{}
	slow := func() *Report {
		who := at.String()
		if who == "" {
			who = "the tokens or the enforcer database"
		}
		return Unknown(opt, fmt.Sprintf("no answer within %.1fs (-t %g) from %s", budget.Seconds(), timeout.Seconds(), who))
	}
	done := make(chan *Report, 1)
	go func() { done <- check(ctx, src, opt, at) }()
	select {
	case rep := <-done:
		if !rep.Measured && strings.Contains(rep.Summary, context.DeadlineExceeded.Error()) {
			return slow() // says more than "deadline exceeded"
		}
		return rep
	case <-time.After(budget):
		// Give the reads a moment to kill and reap what hangs: no reader
		// process outlives a check.
		select {
		case rep := <-done:
			return rep
		case <-time.After(timeout - budget):
		}
		return slow()
	}
}

// Facts are what Evaluate judges: one read of everything.
type Facts struct {
	Snapshot      *inventory.Snapshot
	Store         *ledger.Store
	Book          *ledger.DSBook
	Parent        map[string]parent.Answer
	RequireBackup map[string]bool
	// Exposed names what of the ledger others than its writers can change.
	Exposed []string
	// Writer names the live writer holding the ledger's lock, "" when none
	// does: a ceremony preparing under it is in progress, not interrupted.
	Writer string
	// Served is what the zones' servers serve, by zone ([zone]); nil when
	// not read. ServedWarn is [zone] rrsig_warning.
	Served     map[string][]servedzone.Answer
	ServedWarn time.Duration
	// Publish is the publish gate's alerts (PublishRead: the gate is
	// configured and they were read, or PublishErr says why not).
	Publish     []publish.Alert
	PublishRead bool
	PublishErr  error
}

// allKeys lists the locators of every key the enforcer has.
func allKeys(st *enforcer.State) []string {
	out := make([]string, 0, len(st.Keys))
	for _, k := range st.Keys {
		out = append(out, k.Locator)
	}
	return out
}

// zoneKeys lists the locators of every key a zone uses, once each.
func zoneKeys(st *enforcer.State) []string {
	seen := map[string]bool{}
	var out []string
	for _, z := range st.Zones {
		for _, u := range z.Keys {
			if l := strings.ToLower(u.Key.Locator); !seen[l] {
				seen[l] = true
				out = append(out, l)
			}
		}
	}
	sort.Strings(out)
	return out
}

// servedInput is what servedzone.Compare needs from the token reads.
func servedInput(f Facts, opt CheckOptions) servedzone.Input {
	in := servedzone.Input{State: f.Snapshot.State, Served: f.Served, Parent: f.Parent, Coverage: f.Store.Coverage(),
		RequireBackup: f.RequireBackup, PublicKeys: hooks.PublicKeys(f.Snapshot.Results),
		Holders: map[string]int{}, Tokens: map[string]int{}, TokensRead: true, Warn: f.ServedWarn, Now: opt.At}
	for _, r := range f.Snapshot.Results {
		if r.Token.Kind == hsmcheck.KindBackupToken {
			continue
		}
		in.Tokens[r.Token.Repository]++
		if r.Err != nil || r.Contents == nil {
			in.TokensRead = false
			continue
		}
		for _, k := range r.Contents.Keys {
			in.Holders[strings.ToLower(k.ID)]++
		}
	}
	return in
}

// Evaluate judges facts.
func Evaluate(f Facts, opt CheckOptions) *Report {
	st := f.Snapshot.State
	lost := onNoHSM(f.Snapshot.Results)
	res := rules.Evaluate(rules.Input{Now: opt.At, State: st, Store: f.Store, RequireBackup: f.RequireBackup,
		Interval: opt.Interval, Grace: opt.Grace, NewZones: opt.NewZones, OnNoHSM: lost})
	inv := inventory.Build(st, f.Snapshot.Results, "")
	keys := len(st.Keys)
	rep := &Report{At: opt.At, Ran: time.Now().UTC(), Keys: &keys, Unbacked: res.Unbacked, Backups: res.Ages,
		Problems: inv.Problems, Findings: []Finding{}, Pools: []rules.Pool{}, Measured: true, Options: opt}
	add := func(f Finding) { rep.Findings = append(rep.Findings, f) }
	for _, u := range res.Unbacked {
		add(Finding{State: StateCritical, Category: "rule 1", Zone: u.Zone, Key: u.Locator,
			Text: fmt.Sprintf("zone %s %s %d (key %s) is in use without a confirmed backup: %s", u.Zone, u.Role, u.KeyTag, u.Locator, u.Reason)})
	}
	// Presence is measured per repository: where a token could not be
	// read, neither its missing keys nor its pools are.
	unread := map[string]bool{}
	for i, r := range f.Snapshot.Results {
		if r.Err != nil {
			unread[r.Token.Repository] = true
			add(Finding{State: StateUnknown, Category: "token", Subject: r.Token.Name, Text: "cannot read " + human.OneLine(r.Err.Error())})
			continue
		}
		// A mirror configured as a token read before it is that token:
		// what the second copy holds is not read at all.
		for _, before := range f.Snapshot.Results[:i] {
			if before.Err == nil && before.Token.Repository == r.Token.Repository && hsmcheck.SameToken(before.Token, r.Token) {
				unread[r.Token.Repository] = true
				add(Finding{State: StateUnknown, Category: "token", Subject: r.Token.Name,
					Text: fmt.Sprintf("cannot read %s: it is the same token as %s (same module, label and environment): it holds no second copy of the keys; give it its own configuration (module, token_label or env)",
						r.Token.Describe(), before.Token.Describe())})
				break
			}
		}
	}
	for _, r := range f.Snapshot.Results {
		if !r.ReadAt.IsZero() && (rep.TokensRecorded == nil || r.ReadAt.Before(*rep.TokensRecorded)) {
			at := r.ReadAt
			rep.TokensRecorded = &at
		}
	}
	missing := 0
	for _, p := range inv.Problems {
		if p.Kind == inventory.Missing {
			missing++
		}
		add(Finding{State: StateCritical, Category: "presence", Key: p.Locator, Subject: p.Token, Text: p.String()})
	}
	if len(unread) == 0 {
		rep.Missing = &missing
	}
	lostPool(st, f.Store.Coverage(), lost, add)
	for _, p := range res.Pools {
		if unread[p.Repository] {
			continue
		}
		rep.Pools = append(rep.Pools, p)
		if p.Idle {
			continue
		}
		s := StateOK
		switch {
		case opt.Crit.Alert(float64(p.Spare)):
			s = StateCritical
		case opt.Warn.Alert(float64(p.Spare)):
			s = StateWarning
		}
		if s == StateOK {
			continue
		}
		gap := ""
		lost := p.OnNoHSM != nil && *p.OnNoHSM > 0
		switch {
		case p.Gap && lost:
			gap = "; a key that is not backed up or on no HSM comes before backed-up ones"
		case p.Gap:
			gap = "; a key that is not backed up comes before backed-up ones"
		}
		if lost {
			gap += fmt.Sprintf("; %d on no HSM, never spares", *p.OnNoHSM)
		}
		spare := p.Spare
		add(Finding{State: s, Category: "rule 2", Subject: p.Name(), Spare: &spare,
			Text: fmt.Sprintf("pool %s: spare %d: %d backed up at the head of %d unused, %d needed until %s%s",
				p.Name(), p.Spare, p.Covered, p.Unused, p.Needed, p.Until.Format(human.Minute), gap)})
	}
	for _, a := range res.Ages {
		b := Finding{State: StateWarning, Category: "backup", Subject: a.Repository}
		switch {
		case a.Last == nil:
			b.Text = fmt.Sprintf("no confirmed backup ceremony for repository %s yet", a.Repository)
		case a.Age > opt.Interval+opt.Grace:
			b.State = StateCritical
			b.Text = fmt.Sprintf("last confirmed backup of %s is %s old, past interval %s + grace %s", a.Repository, human.Duration(a.Age), human.Duration(opt.Interval), human.Duration(opt.Grace))
		case a.Age > opt.Interval:
			b.Text = fmt.Sprintf("last confirmed backup of %s is %s old, past interval %s", a.Repository, human.Duration(a.Age), human.Duration(opt.Interval))
		default:
			continue
		}
		add(b)
	}
	for _, s := range backup.FindStuck(st, f.Store, f.Writer, opt.At, opt.Grace) {
		add(Finding{State: StateWarning, Category: "ceremony", Subject: s.Ceremony, Brief: s.Brief(), Text: s.String()})
	}
	for _, e := range f.Exposed {
		add(Finding{State: StateWarning, Category: "state", Text: e})
	}
	for _, r := range f.Book.Refused {
		add(Finding{State: StateWarning, Category: "state", Subject: r.Path,
			Text: fmt.Sprintf("%s: refused: %s (only root and state_dir's owner write records: look at it, then remove it)", r.Path, r.Reason)})
	}
	zones := hooks.Status(hooks.StatusInput{State: st, Book: f.Book, Coverage: f.Store.Coverage(), RequireBackup: f.RequireBackup,
		Parent: f.Parent, PublicKeys: hooks.PublicKeys(f.Snapshot.Results), Now: opt.At})
	for _, df := range hooks.Findings(zones) {
		s := StateWarning
		switch df.Severity {
		case hooks.Critical:
			s = StateCritical
		case hooks.Unknown:
			s = StateUnknown
		}
		add(Finding{State: s, Category: df.Category, Zone: df.Zone, Key: df.Key, Text: df.Text})
	}
	for _, sf := range servedzone.Compare(servedInput(f, opt)) {
		s := StateWarning
		switch {
		case sf.Unknown:
			s = StateUnknown
		case sf.Critical:
			s = StateCritical
		}
		add(Finding{State: s, Category: "zone", Zone: sf.Zone, Text: sf.Text})
	}
	publishFindings(rep, f, opt, add)
	withheld := len(f.Book.Pending)
	rep.Withheld = &withheld
	sort.SliceStable(rep.Findings, func(i, j int) bool {
		return rep.Findings[i].State.Severity() > rep.Findings[j].State.Severity()
	})
	for _, fd := range rep.Findings {
		rep.State = Worse(rep.State, fd.State)
	}
	rep.Summary = summarize(rep)
	return rep
}

// publishFindings turns the publish gate's alerts into findings: what is
// held, refused, failed, served without a backup or bypassed.
func publishFindings(rep *Report, f Facts, opt CheckOptions, add func(Finding)) {
	if !f.PublishRead {
		return
	}
	if f.PublishErr != nil {
		add(Finding{State: StateUnknown, Category: "publish", Text: "cannot read the publish gate's state: " + human.OneLine(f.PublishErr.Error())})
		return
	}
	rep.Publish = append([]publish.Alert{}, f.Publish...)
	for _, a := range f.Publish {
		fd := Finding{State: StateWarning, Category: "publish", Zone: a.Zone, Text: a.Text(opt.At), Brief: a.Kind}
		if a.Critical {
			fd.State = StateCritical
		}
		if a.Zone == publish.AllZones {
			fd.Zone = ""
		}
		if a.Serial != 0 {
			fd.Subject = fmt.Sprintf("serial %d", a.Serial)
		}
		for _, k := range a.Keys {
			if !k.BackedUp && k.Locator != "" {
				fd.Key = k.Locator
				break
			}
		}
		add(fd)
	}
}

// onNoHSM reports a key that no token of its repository holds, where
// every token of the repository was read.
func onNoHSM(results []hsmcheck.Result) func(*enforcer.Key) bool {
	read := map[string]bool{} // repository -> every token read
	for _, r := range results {
		if r.Token.Kind == hsmcheck.KindBackupToken {
			continue
		}
		if _, seen := read[r.Token.Repository]; !seen {
			read[r.Token.Repository] = true
		}
		if r.Err != nil {
			read[r.Token.Repository] = false
		}
	}
	return func(k *enforcer.Key) bool {
		if !read[k.Repository] {
			return false
		}
		for _, r := range results {
			if r.Token.Repository == k.Repository && r.Token.Kind != hsmcheck.KindBackupToken {
				if _, n := r.Contents.Find(k.Locator); n > 0 {
					return false
				}
			}
		}
		return true
	}
}

// lostPool names what to do about keys no zone took that are on no HSM:
// at a rollover OpenDNSSEC 2.1 takes them one by one, fails on each
// ("updatePolicy: error keytag") and leaves it PRIVATE with no zone.
// Restore those a ceremony backed up; remove from its pool those made after
// the last backup.
func lostPool(st *enforcer.State, cov ledger.Coverage, lost func(*enforcer.Key) bool, add func(Finding)) {
	after, covered := map[string]int{}, map[string]int{}
	for _, k := range st.Keys {
		// UNUSED, or PRIVATE with no zone: what 2.1 leaves of a pool key it
		// took for a rollover and could not use.
		if k.State == enforcer.Delete || len(k.Uses) > 0 || !lost(k) {
			continue
		}
		if cov.Covering(k.Repository, k.Locator) != nil {
			covered[k.Repository]++
		} else {
			after[k.Repository]++
		}
	}
	for _, repo := range slices.Sorted(maps.Keys(covered)) {
		add(Finding{State: StateCritical, Category: "pool", Subject: repo,
			Text: fmt.Sprintf("%s of repository %s %s on no HSM, and the enforcer would take %s at a rollover and fail: restore %s from the backup token (ods-keyguard recover verify)", human.Count(covered[repo], "unused backed-up key"), repo, human.Noun(covered[repo], "is", "are"), human.Noun(covered[repo], "it", "them"), human.Noun(covered[repo], "it", "them"))})
	}
	for _, repo := range slices.Sorted(maps.Keys(after)) {
		add(Finding{State: StateCritical, Category: "pool", Subject: repo,
			Text: fmt.Sprintf("%s of repository %s, made after the last ceremony, %s on no HSM, and the enforcer would take %s at a rollover and fail: none is a spare; remove %s from its pool with ods-keyguard recover prune-pool (the enforcer stopped)", human.Count(after[repo], "unused key"), repo, human.Noun(after[repo], "is", "are"), human.Noun(after[repo], "it", "them"), human.Noun(after[repo], "it", "them"))})
	}
}

// summaryBudget keeps the first line within about 200 bytes with its
// perfdata: schedulers put only that line into notifications.
const summaryBudget = 120

// summarize names the worst problems first, a clause per category, whole
// clauses while they fit in summaryBudget bytes, then how many more; never
// a ';', which Nagios turns into ':'.
func summarize(rep *Report) string {
	if len(rep.Findings) == 0 {
		// Pool keys made since the last ceremony need no backup yet: what
		// holds is that every key in use has one. Of several repositories
		// the oldest last backup is the one due first.
		last := "last backup never"
		var oldest *rules.Age
		for i, a := range rep.Backups {
			if a.Last != nil && (oldest == nil || a.Age > oldest.Age) {
				oldest = &rep.Backups[i]
			}
		}
		switch {
		case oldest != nil && len(rep.Backups) > 1:
			last = fmt.Sprintf("oldest last backup %s ago (%s)", human.Duration(oldest.Age), oldest.Repository)
		case oldest != nil:
			last = "last backup " + human.Duration(oldest.Age) + " ago"
		}
		return fmt.Sprintf("%s, %s: every key in use backed up, enough until the next backup, %s", human.Count(*rep.Keys, "key"), human.Count(len(rep.Pools), "pool"), last)
	}
	type clause struct {
		text string
		n    int // findings it stands for
	}
	var clauses []clause
	seen := map[string]bool{}
	for _, f := range rep.Findings {
		if seen[f.Category] {
			continue
		}
		seen[f.Category] = true
		n := 0
		for _, g := range rep.Findings {
			if g.Category == f.Category {
				n++
			}
		}
		switch f.Category {
		case "rule 1":
			var names []string
			for i, u := range rep.Unbacked {
				if i == 2 {
					names = append(names, fmt.Sprintf("+%d", len(rep.Unbacked)-2))
					break
				}
				names = append(names, fmt.Sprintf("%s %s %d", u.Zone, u.Role, u.KeyTag))
			}
			clauses = append(clauses, clause{fmt.Sprintf("%s without a confirmed backup (%s)", human.Count(len(rep.Unbacked), "key in use", "keys in use"), strings.Join(names, ", ")), n})
		case "presence":
			p := rep.Problems[0]
			clauses = append(clauses, clause{fmt.Sprintf("%s on the tokens (key %s %s on %s)", human.Count(n, "problem"), p.Locator, p.Kind, p.Token), n})
		case "rule 2":
			var pools []string
			for _, g := range rep.Findings {
				if g.Category == "rule 2" {
					pools = append(pools, fmt.Sprintf("%s spare %d", g.Subject, *g.Spare))
				}
			}
			if len(pools) > 2 {
				pools = append(pools[:2], fmt.Sprintf("+%d", len(pools)-2))
			}
			clauses = append(clauses, clause{fmt.Sprintf("%s short of backed-up keys (%s)", human.Count(n, "pool"), strings.Join(pools, ", ")), n})
		case "hook":
			clauses = append(clauses, clause{fmt.Sprintf("%s kept back or unaccounted for (hook status)", human.Count(n, "DS request")), n})
		case "zone":
			zones := zonesOf(rep.Findings, func(g Finding) bool { return g.Category == "zone" })
			if len(zones) > 2 {
				zones = append(zones[:2], fmt.Sprintf("+%d", len(zones)-2))
			}
			clauses = append(clauses, clause{fmt.Sprintf("%s with the zones as served (%s)", human.Count(n, "problem"), strings.Join(zones, ", ")), n})
		case "parent":
			zones := zonesOf(rep.Findings, func(g Finding) bool { return g.Category == "parent" && g.State == StateCritical })
			text := fmt.Sprintf("%s with the DS at the parent (hook status)", human.Count(n, "problem"))
			if len(zones) > 0 {
				if len(zones) > 2 {
					zones = append(zones[:2], fmt.Sprintf("+%d", len(zones)-2))
				}
				text = fmt.Sprintf("chain of trust broken at the parent: no DS matches a backed-up KSK (%s)", strings.Join(zones, ", "))
			}
			clauses = append(clauses, clause{text, n})
		case "publish":
			var names []string
			for _, g := range rep.Findings {
				if g.Category == "publish" && len(names) < 3 {
					if g.Zone == "" {
						names = append(names, "every zone "+g.Brief)
					} else {
						names = append(names, g.Zone+" "+g.Brief)
					}
				}
			}
			if n > 2 {
				names = append(names[:2], fmt.Sprintf("+%d", n-2))
			}
			clauses = append(clauses, clause{fmt.Sprintf("publish gate: %s", strings.Join(names, ", ")), n})
		case "ceremony":
			text := f.Brief
			if n > 1 {
				text += fmt.Sprintf(" (+%d more)", n-1)
			}
			clauses = append(clauses, clause{text, n})
		default:
			text := f.Text
			if n > 1 {
				text += fmt.Sprintf(" (+%d more)", n-1)
			}
			clauses = append(clauses, clause{text, n})
		}
	}
	const reserve = len(", +999 more problems")
	out, used := "", 0
	for i, c := range clauses {
		text := strings.ReplaceAll(c.text, ";", ",")
		if i == 0 {
			if len(text) > summaryBudget-reserve {
				cut := summaryBudget - reserve - len("...")
				if j := strings.LastIndexByte(text[:cut], ' '); j > 0 {
					cut = j
				}
				text = strings.TrimRight(text[:cut], ",: ") + "..."
			}
			out, used = text, c.n
			continue
		}
		if len(out)+2+len(text) > summaryBudget-reserve {
			break
		}
		out += ", " + text
		used += c.n
	}
	if left := len(rep.Findings) - used; left > 0 {
		out += fmt.Sprintf(", +%s", human.Count(left, "more problem"))
	}
	return out
}

// tokenNames names the tokens for a message.
func tokenNames(tokens []hsmcheck.Token) string {
	var names []string
	for _, t := range tokens {
		names = append(names, t.Describe())
	}
	if len(names) == 0 {
		return "none configured"
	}
	return strings.Join(names, ", ")
}

// zonesOf names the zones of the findings that match, once each, in order.
func zonesOf(fs []Finding, match func(Finding) bool) []string {
	var zones []string
	named := map[string]bool{}
	for _, g := range fs {
		if match(g) && g.Zone != "" && !named[g.Zone] {
			named[g.Zone] = true
			zones = append(zones, g.Zone)
		}
	}
	return zones
}
