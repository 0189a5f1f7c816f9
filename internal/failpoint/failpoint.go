// Package failpoint lets a test kill ods-keyguard at a named step, as a
// crash or kill -9 would, or hold it there, as a slow step would:
// $ODS_KEYGUARD_FAILPOINT names the step. "STEP" kills; "STEP:pause" writes
// the pid to $ODS_KEYGUARD_FAILPOINT_PIDFILE and waits (at most a minute)
// until the test removes that file, so the test can look at the step in
// progress, then let it go on.
//
// The failpoints exist only in a binary built with the build tag
// failpoint, as make test builds the test binary (etcd's gofail does the
// same). Without it, as in every release, Hit is an empty function that
// the compiler removes and nothing reads the environment variable.
package failpoint
