package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/ods-keyguard/ods-keyguard/internal/human"
)

// VerifyReport is what ledger verify found: the log, its checkpoints, and
// the working records compared with the log.
type VerifyReport struct {
	Where       string `json:"where"`
	Origin      string `json:"origin"`
	Entries     uint64 `json:"entries"`
	Head        string `json:"head"`
	Short       string `json:"short"`
	Checkpoints int    `json:"checkpoints"`
	// Signed is how many entries the newest checkpoint that verifies
	// covers; the entries after it are only as good as this host.
	Signed uint64 `json:"signed"`
	// Archived is how many entries before the live log ledger archive
	// moved out (checked only with --archive); Archives the archive files
	// read, and ArchivedRecords the publish records logged there only.
	Archived            uint64    `json:"archived"`
	Archives            []string  `json:"archives"`
	ArchivedRecords     int       `json:"archived_records"`
	ArchivedCheckpoints int       `json:"archived_checkpoints"`
	Problems            []Problem `json:"problems"`
	// Unknown is what could not be checked: exit status 3 when there is
	// no problem.
	Unknown []string `json:"unknown"`
}

// Problem is one thing that does not match: the first entry of the log
// that does not, a checkpoint, or a working record.
type Problem struct {
	Entry  *uint64 `json:"entry"`
	Record string  `json:"record,omitempty"`
	What   string  `json:"what"`
}

func (p Problem) String() string {
	switch {
	case p.Entry != nil && p.Record != "":
		return fmt.Sprintf("entry %d: %s: %s", *p.Entry, p.Record, p.What)
	case p.Entry != nil:
		return fmt.Sprintf("entry %d: %s", *p.Entry, p.What)
	case p.Record != "":
		return p.Record + ": " + p.What
	}
	return p.What
}

// Status is ledger verify's exit status: 0 all matches, 1 a problem, 3
// something could not be checked.
func (r *VerifyReport) Status() int {
	switch {
	case len(r.Problems) > 0:
		return 1
	case len(r.Unknown) > 0:
		return 3
	}
	return 0
}

func (r *VerifyReport) problem(seq uint64, record, format string, args ...any) {
	p := Problem{Record: record, What: fmt.Sprintf(format, args...)}
	if seq > 0 {
		p.Entry = &seq
	}
	r.Problems = append(r.Problems, p)
}

// WriteText prints the report: a summary line, then one line per problem
// and per thing not checked.
func (r *VerifyReport) WriteText(w io.Writer) {
	switch r.Status() {
	case 0:
		fmt.Fprintf(w, "ledger verify: %s, chain intact, %s verified, the records match the log\n", human.Count(int(r.Entries), "entry"), human.Count(r.Checkpoints, "checkpoint"))
	case 1:
		fmt.Fprintf(w, "ledger verify: %s\n", r.Problems[0])
	default:
		fmt.Fprintf(w, "ledger verify: cannot tell: %s\n", r.Unknown[0])
	}
	fmt.Fprintf(w, "log: %s, origin %s\n", r.Where, r.Origin)
	fmt.Fprintf(w, "head: %s (%s) %s\n", r.Short, human.Count(int(r.Entries), "entry"), r.Head)
	switch {
	case r.Signed == 0:
		fmt.Fprintf(w, "signed: no checkpoint verifies: no entry is covered by a signature\n")
	case r.Signed < r.Entries:
		fmt.Fprintf(w, "signed: entries %d-%d by checkpoint; %d-%d not signed yet (as good as this host)\n", r.Archived+1, r.Signed, r.Signed+1, r.Entries)
	default:
		fmt.Fprintf(w, "signed: every entry, by checkpoint %d\n", r.Signed)
	}
	if r.Archived > 0 {
		fmt.Fprintf(w, "archived: entries 1-%d are in archive files, not read (ledger verify --archive FILE... reads them)", r.Archived)
		if r.ArchivedCheckpoints > 0 || r.ArchivedRecords > 0 {
			fmt.Fprintf(w, ": %s and %s logged there only, not checked", human.Count(r.ArchivedCheckpoints, "checkpoint"), human.Count(r.ArchivedRecords, "publish record"))
		}
		fmt.Fprintln(w)
	}
	for _, a := range r.Archives {
		fmt.Fprintf(w, "archive: %s\n", a)
	}
	for _, p := range r.Problems {
		fmt.Fprintf(w, "MISMATCH %s\n", p)
	}
	for _, u := range r.Unknown {
		fmt.Fprintf(w, "UNKNOWN %s\n", u)
	}
}

// Verifiers makes the verifiers of public keys (NAME+HASH+KEY).
func Verifiers(keys []string) (note.Verifiers, error) {
	var vs []note.Verifier
	for _, k := range keys {
		v, err := note.NewVerifier(k)
		if err != nil {
			return nil, fmt.Errorf("public key %q: %w", k, err)
		}
		vs = append(vs, v)
	}
	return note.VerifierList(vs...), nil
}

// Verify checks the whole log (every entry's hash and link, from the
// first), every checkpoint (its signature by one of the configured keys,
// and the log's entry at its size), and the working records against the
// log: every ceremony, open ceremony and DS event must be what the log
// recorded, and everything the log recorded must be there (or, for DS
// events, dropped by compaction, which the log says). An error is what
// kept it from reading the ledger at all.
func (l *Ledger) Verify(ctx context.Context, archives ...string) (*VerifyReport, error) {
	stored, err := l.b.readLog(ctx, 1, 0)
	if err != nil {
		return nil, err
	}
	return l.verifyStored(ctx, stored, archives)
}

// verifyStored is Verify of the live log as read (stored).
func (l *Ledger) verifyStored(ctx context.Context, stored []Stored, archives []string) (*VerifyReport, error) {
	r := &VerifyReport{Where: l.Where(), Problems: []Problem{}, Unknown: []string{}, Archives: []string{}}
	var err error
	if len(archives) > 0 {
		if stored, err = l.withArchives(r, stored, archives); err != nil {
			return nil, err
		}
	}
	w := newWalker(true)
	// An archived log begins after the entries ledger archive moved out:
	// at the entry after the cut that its archived entry names, chained to
	// the hash it names.
	base, baseSeq, err := beginning(stored, w)
	switch {
	case err != nil:
		r.problem(1, "", "%v: removed", err)
		stored = nil
	case base != nil:
		r.Archived = w.next - 1
	}
	var log []Entry
	for _, s := range stored {
		e, err := w.step(s)
		if err != nil {
			var m *Mismatch
			if errors.As(err, &m) {
				r.problem(m.Seq, "", "%s", m.Reason)
			}
			break
		}
		log = append(log, e)
	}
	r.Entries = w.next - 1
	r.Head = w.prev.String()
	r.Short = ShortForm(r.Entries, w.prev)
	if len(stored) == 0 && len(r.Problems) == 0 {
		r.Unknown = append(r.Unknown, "the log is empty: nothing has been recorded since ods-keyguard began keeping it")
	}
	begun := baseline{seq: 1, what: "when the log began (its checksum is in the log's first entry)"}
	switch {
	case base != nil:
		begun.Origin, begun.Existing = base.Origin, base.Existing
		begun.seq, begun.what = baseSeq, fmt.Sprintf("when entry %d was written, archiving the entries before it (its checksum is in that entry)", baseSeq)
		begun.archivedBefore = base.ThroughTime
		r.Origin = base.Origin
	case len(log) > 0:
		if log[0].Kind != KindBegun {
			r.problem(1, "", "not the log's first entry (kind %q, not %q): the log's start was removed or replaced", log[0].Kind, KindBegun)
		}
		json.Unmarshal(log[0].Payload, &begun.begunPayload)
		r.Origin = begun.Origin
	}
	if err := l.verifyCheckpoints(ctx, r, w.heads, stored); err != nil {
		return nil, err
	}
	if err := l.verifyRecords(ctx, r, log, begun); err != nil {
		return nil, err
	}
	return r, nil
}

// baseline is what the working records are compared with where the log
// has no entry of a record: the checksums in the log's first entry, or in
// the archived entry the live log begins after (seq, named by what).
type baseline struct {
	begunPayload
	seq  uint64
	what string
	// archivedBefore: publish records from then or before that no entry
	// of the live log names were logged in the archive.
	archivedBefore time.Time
}

// lastSeq is the number of the last stored entry (0: none, or not an
// entry).
func lastSeq(stored []Stored) uint64 {
	if len(stored) == 0 {
		return 0
	}
	e, err := decodeEntry(stored[len(stored)-1])
	if err != nil {
		return uint64(len(stored))
	}
	return e.Seq
}

// withArchives puts the entries of the archive files before the live
// log's, checking each file against the archived entry that names it.
func (l *Ledger) withArchives(r *VerifyReport, stored []Stored, paths []string) ([]Stored, error) {
	type arch struct {
		hdr  archiveHeader
		list []Stored
		sum  string
		path string
	}
	var as []arch
	for _, p := range paths {
		hdr, list, sum, err := readArchive(p)
		if err != nil {
			return nil, err
		}
		as = append(as, arch{hdr, list, sum, p})
	}
	sort.Slice(as, func(i, j int) bool { return as[i].hdr.First < as[j].hdr.First })
	var all []Stored
	for _, a := range as {
		all = append(all, a.list...)
	}
	all = append(all, stored...)
	for _, a := range as {
		_, seq, ok := newestArchived(all, func(p archivedPayload) bool {
			return p.First == a.hdr.First && p.Through == a.hdr.Through && p.SHA256 == a.sum
		})
		if !ok {
			r.problem(0, "archive "+a.path, "no archived entry of the log names this file (entries %d-%d, SHA-256 %s): not this log's archive, or changed since", a.hdr.First, a.hdr.Through, a.sum)
			continue
		}
		r.Archives = append(r.Archives, fmt.Sprintf("%s: entries %d-%d, as entry %d recorded", a.path, a.hdr.First, a.hdr.Through, seq))
	}
	return all, nil
}

func (l *Ledger) verifyCheckpoints(ctx context.Context, r *VerifyReport, heads map[uint64]Hash, stored []Stored) error {
	notes, err := l.b.checkpoints(ctx, false)
	if err != nil {
		return err
	}
	vs, err := Verifiers(l.opts.Keys)
	if err != nil {
		return err
	}
	if len(notes) > 0 && len(l.opts.Keys) == 0 {
		r.Unknown = append(r.Unknown, fmt.Sprintf("%s, and no public key configured ([ledger] public_keys or signing_key): their signatures cannot be checked", human.Count(len(notes), "checkpoint")))
		return nil
	}
	for _, n := range notes {
		if n.Err != nil {
			r.problem(0, n.Where, "unreadable: %v", n.Err)
			continue
		}
		nt, err := note.Open([]byte(n.Text), vs)
		if err != nil {
			switch names := signers(err); {
			case names != "":
				r.problem(0, n.Where, "signed by key %s, which is not configured: not a checkpoint of this ledger's keys", names)
			default:
				r.problem(0, n.Where, "not a valid signed checkpoint (%v)", err)
			}
			continue
		}
		origin, size, h, err := parseCheckpointText(nt.Text)
		switch {
		case err != nil:
			r.problem(0, n.Where, "%v", err)
			continue
		case origin != r.Origin:
			r.problem(0, n.Where, "of log %q, not of this log (%q)", origin, r.Origin)
			continue
		case size > r.Entries && lastSeq(stored) < size:
			r.problem(size, n.Where, "signed a log of %s; the log has %d: entries %d-%d were removed", human.Count(int(size), "entry"), lastSeq(stored), lastSeq(stored)+1, size)
			continue
		case size > r.Entries:
			continue // the chain broke before: named there
		case size <= r.Archived:
			r.ArchivedCheckpoints++ // of entries in the archive: checked with it
			continue
		case heads[size] != h:
			r.problem(size, n.Where, "not the hash the checkpoint of %s signed: the log was changed at or before entry %d after it was signed", human.Count(int(size), "entry"), size)
			continue
		}
		r.Checkpoints++
		r.Signed = max(r.Signed, size)
	}
	return nil
}

// corrupt makes a working record that cannot be trusted (a checksum that
// does not match) a problem of the report; any other error stays one.
func (r *VerifyReport) corrupt(err error) error {
	var ce *CorruptError
	if errors.As(err, &ce) {
		r.problem(0, ce.Path, "%s", ce.Reason)
		return nil
	}
	return err
}

// verifyRecords compares the working records with the log.
func (l *Ledger) verifyRecords(ctx context.Context, r *VerifyReport, log []Entry, begun baseline) error {
	open, _, history, err := l.b.loadCeremonies(ctx)
	if err != nil {
		return r.corrupt(err)
	}
	evs, _, err := l.b.loadDS(ctx)
	if err != nil {
		return r.corrupt(err)
	}
	pubs, err := l.b.loadPublish(ctx, "")
	if err != nil {
		return r.corrupt(err)
	}
	ceremonies := map[string]logged{} // id -> its newest entry
	openState := map[string]logged{}  // repository -> its open ceremony, or none (sum "")
	dsLogged, pubLogged := newIDLog(), newIDLog()
	for _, x := range begun.Existing.Open {
		openState[x.Repository] = logged{sum: x.SHA256, repo: x.Repository}
	}
	for _, e := range log {
		switch e.Kind {
		case KindCeremony:
			var p ceremonyPayload
			var c struct{ ID, Repository, Status string }
			if json.Unmarshal(e.Payload, &p) != nil || json.Unmarshal(p.Ceremony, &c) != nil {
				r.problem(e.Seq, "", "not a ceremony record")
				continue
			}
			g := logged{seq: e.Seq, sum: sumOf(p.Ceremony), status: c.Status, repo: c.Repository}
			ceremonies[c.ID] = g
			if ended(c.Status) {
				openState[c.Repository] = logged{seq: e.Seq}
			} else {
				openState[c.Repository] = g
			}
		case KindCeremonyDropped:
			var p droppedPayload
			json.Unmarshal(e.Payload, &p)
			openState[p.Repository] = logged{seq: e.Seq}
		case KindDS:
			dsLogged.add(e)
		case KindDSCompacted:
			dsLogged.drop(e)
		case KindPublish:
			pubLogged.add(e)
		case KindPublishDropped:
			pubLogged.drop(e)
		}
	}
	before := func(list []recordSum) map[string]string {
		m := map[string]string{}
		for _, x := range list {
			m[x.ID] = x.SHA256
		}
		return m
	}
	oldHistory, oldDS := before(begun.Existing.History), before(begun.Existing.DS)
	// The history: each ceremony as the log recorded its end.
	inHistory := map[string]bool{}
	for _, c := range history {
		_, sum, _ := seal(c)
		inHistory[c.ID] = true
		g, inLog := ceremonies[c.ID]
		if inLog && !ended(g.status) {
			g.sum = "" // the log has it open: not this record
		}
		before, inBefore := oldHistory[c.ID]
		r.compare("ceremony "+c.ID+" in the history", sum, g, inLog, before, inBefore, begun, "not in the log: added by hand")
	}
	for _, id := range sortedKeys(ceremonies) {
		if g := ceremonies[id]; ended(g.status) && !inHistory[id] {
			r.problem(g.seq, "ceremony "+id, "%s in the log, missing from the history: removed by hand", g.status)
		}
	}
	for _, x := range begun.Existing.History {
		if !inHistory[x.ID] {
			r.problem(begun.seq, "ceremony "+x.ID, "in the history %s, missing from it now: removed by hand", begun.what)
		}
	}
	// The open ceremonies: each repository's as the log left it.
	repos := map[string]bool{}
	for repo := range open {
		repos[repo] = true
	}
	for repo := range openState {
		repos[repo] = true
	}
	for _, repo := range sortedKeys(repos) {
		want, have := openState[repo], open[repo]
		what := fmt.Sprintf("open ceremony of repository %q", repo)
		switch {
		case have == nil && want.sum == "":
		case have == nil:
			r.problem(want.seq, what, "the log has it open, the records have none (removed by hand, or a step that stopped between the log and the records: run it again)")
		default:
			_, sum, _ := seal(have)
			if sum != want.sum {
				r.problem(want.seq, what, "%s is not what the log recorded (changed by hand, or a step that stopped between the log and the records: run it again)", have.ID)
			}
		}
	}
	// The DS records: each event as the log recorded it, and every event
	// the log recorded that compaction did not drop.
	for _, e := range evs {
		_, sum, _ := seal(e)
		g, inLog := dsLogged.seen(e.ID)
		before, inBefore := oldDS[e.ID]
		r.compare("DS record "+e.ID, sum, g, inLog, before, inBefore, begun, fmt.Sprintf("(%s %s zone %s) not in the log: added by hand", e.Kind, e.Action, e.Zone))
	}
	dsLogged.missing(r, "DS record ", "compaction")
	for _, x := range begun.Existing.DS {
		if !dsLogged.held[x.ID] && !dsLogged.dropped[x.ID] {
			r.problem(begun.seq, "DS record "+x.ID, "in the records %s, missing now (and not dropped by compaction): removed by hand", begun.what)
		}
	}
	// The publish gate's records, both ways, as the DS records.
	for _, p := range pubs {
		_, sum, _ := seal(p)
		g, inLog := pubLogged.seen(p.ID)
		if !inLog && !begun.archivedBefore.IsZero() && !p.Time.After(begun.archivedBefore) {
			r.ArchivedRecords++ // logged in the archive: checked with it
			continue
		}
		r.compare("publish record "+p.ID, sum, g, inLog, "", false, begun, fmt.Sprintf("(%s zone %s serial %d) not in the log: added by hand", p.Action, p.Zone, p.Serial))
	}
	pubLogged.missing(r, "publish record ", "the bound of "+human.Count(maxPublishRecords, "record")+" a zone")
	return nil
}

// idLog is what the log says of records kept by ID (DS events, publish
// records): each one's newest entry, the IDs a bound or compaction
// dropped from the working records, and which the records hold.
type idLog struct {
	entries map[string]logged
	dropped map[string]bool
	held    map[string]bool
}

func newIDLog() *idLog {
	return &idLog{entries: map[string]logged{}, dropped: map[string]bool{}, held: map[string]bool{}}
}

// add takes an entry that records one: its payload has the ID.
func (l *idLog) add(e Entry) {
	var p struct{ ID string }
	json.Unmarshal(e.Payload, &p)
	l.entries[p.ID] = logged{seq: e.Seq, sum: sumOf(e.Payload)}
}

// drop takes an entry that names the records dropped.
func (l *idLog) drop(e Entry) {
	var p compactedRecord
	json.Unmarshal(e.Payload, &p)
	for _, id := range p.Dropped {
		l.dropped[id] = true
	}
}

// seen notes that the records hold id, and says what the log has of it.
func (l *idLog) seen(id string) (logged, bool) {
	l.held[id] = true
	g, ok := l.entries[id]
	return g, ok
}

// missing names each record the log has, in its order, that the records
// neither hold nor dropped (by dropper).
func (l *idLog) missing(r *VerifyReport, what, dropper string) {
	ids := sortedKeys(l.entries)
	sort.SliceStable(ids, func(i, j int) bool { return l.entries[ids[i]].seq < l.entries[ids[j]].seq })
	for _, id := range ids {
		if !l.held[id] && !l.dropped[id] {
			r.problem(l.entries[id].seq, what+id, "in the log, missing from the records (and not dropped by %s): removed by hand", dropper)
		}
	}
}

// logged is what the log says of a record: its newest entry, the
// record's checksum there, and for a ceremony its status and repository.
type logged struct {
	seq    uint64
	sum    string
	status string
	repo   string
}

// compare checks a working record (its checksum sum) against the log's
// newest entry of it (g, when inLog), else against the checksum the log's
// first entry kept of it (before, when inBefore); neither: added, and
// added says so.
func (r *VerifyReport) compare(what, sum string, g logged, inLog bool, before string, inBefore bool, begun baseline, added string) {
	switch {
	case inLog && g.sum != sum:
		r.problem(g.seq, what, "not what the log recorded: changed by hand")
	case inLog:
	case inBefore && before != sum:
		r.problem(begun.seq, what, "not what it was %s: changed by hand", begun.what)
	case !inBefore:
		r.problem(0, what, "%s", added)
	}
}

// ended says whether a ceremony status ends it (the history holds it).
func ended(status string) bool {
	return status == Confirmed || status == Abandoned || status == Restored
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
