package ledger

// The files backend keeps its records in state_dir, through
// internal/statedir: every file opened relative to the folder, never
// through a symlink, a regular file owned by root or state_dir's owner,
// size-capped, written atomically.

// Size caps: what one state file may hold. A ceremony file or the history
// holds every key of every ceremony; a spool file is one hook run's or one
// release's events.
const (
	maxStateFile = 256 << 20
	maxSpoolFile = 16 << 20
	createDir    = true
)
