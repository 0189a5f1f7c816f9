package publish

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/ods-keyguard/ods-keyguard/internal/failpoint"
	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/internal/proc"
)

// install copies src to site.ZoneFile so that the name servers, or a
// crash, see the old file or the new one, never a part: a temporary file
// made exclusively in the target's folder, written, given its owner,
// group and mode, fsync'd, renamed over the target, and the folder
// fsync'd. Nothing is renamed once ctx has ended. A failure (a full disk,
// say) removes the temporary file and leaves the target as it was.
func install(ctx context.Context, src *os.File, site Site) error {
	target := site.ZoneFile
	dir, base := filepath.Dir(target), filepath.Base(target)
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("zone_file %s: folder: %w", target, unwrap(err))
	}
	defer d.Close()
	if fi, err := d.Stat(); err != nil || !fi.IsDir() {
		return fmt.Errorf("zone_file %s: %s is not a folder", target, dir)
	}
	var r [6]byte
	rand.Read(r[:])
	tmp := fmt.Sprintf(".%s.keyguard-%d-%s", base, os.Getpid(), hex.EncodeToString(r[:]))
	fd, err := syscall.Openat(int(d.Fd()), tmp, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("zone_file %s: make a temporary file in %s: %w", target, dir, err)
	}
	f := os.NewFile(uintptr(fd), filepath.Join(dir, tmp))
	done := false
	defer func() {
		if !done {
			f.Close()
			syscall.Unlinkat(int(d.Fd()), tmp)
		}
	}()
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("zone_file %s: %w", target, err)
	}
	if err := copyWithin(ctx, f, src); err != nil {
		return fmt.Errorf("zone_file %s: write: %w", target, unwrap(err))
	}
	if site.Owner >= 0 || site.Group >= 0 {
		if err := f.Chown(site.Owner, site.Group); err != nil {
			return fmt.Errorf("zone_file %s: owner %d, group %d: %w", target, site.Owner, site.Group, unwrap(err))
		}
	}
	if err := f.Chmod(os.FileMode(site.FileMode)); err != nil {
		return fmt.Errorf("zone_file %s: mode %04o: %w", target, site.FileMode, unwrap(err))
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("zone_file %s: sync: %w", target, unwrap(err))
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("zone_file %s: %w", target, unwrap(err))
	}
	failpoint.Hit("publish-before-rename")
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("zone_file %s: out of time before the rename: %w", target, err)
	}
	if err := syscall.Renameat(int(d.Fd()), tmp, int(d.Fd()), base); err != nil {
		return fmt.Errorf("zone_file %s: rename: %w", target, err)
	}
	done = true
	failpoint.Hit("publish-after-rename")
	if err := d.Sync(); err != nil {
		return fmt.Errorf("zone_file %s: sync folder: %w", target, unwrap(err))
	}
	return nil
}

// copyWithin copies src to dst in chunks, stopping when ctx ends.
func copyWithin(ctx context.Context, dst, src *os.File) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := io.CopyN(dst, src, 8<<20)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
	}
}

func unwrap(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// reload runs the name server's reload command, %zone and %file replaced,
// within timeout, its process group killed and reaped when it is out of
// time. The error carries the last line it wrote.
func reload(ctx context.Context, args []string, zone, file string) error {
	if len(args) == 0 {
		return nil
	}
	argv := make([]string, len(args))
	for i, a := range args {
		argv[i] = strings.NewReplacer("%zone", zone, "%file", file).Replace(a)
	}
	cmd := proc.Command(ctx, argv[0], argv[1:]...)
	var out bytes.Buffer
	w := &limited{w: &out, n: 4096} // one writer: exec then calls it from one goroutine
	cmd.Stdout, cmd.Stderr = w, w
	err := proc.Run(ctx, cmd)
	if err == nil {
		return nil
	}
	last := strings.TrimSpace(out.String())
	if i := strings.LastIndexByte(last, '\n'); i >= 0 {
		last = last[i+1:]
	}
	if ctx.Err() != nil {
		return fmt.Errorf("reload %s: did not finish in time, killed", strings.Join(argv, " "))
	}
	if last != "" {
		return fmt.Errorf("reload %s: %v: %s", strings.Join(argv, " "), err, human.OneLine(last))
	}
	return fmt.Errorf("reload %s: %v", strings.Join(argv, " "), err)
}

// limited keeps the first n bytes written to it and drops the rest.
type limited struct {
	w io.Writer
	n int
}

func (l *limited) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}

// cleanTemp removes what a run that died while installing left beside the
// target: its temporary files, of processes no longer running.
func cleanTemp(target string) {
	dir, base := filepath.Dir(target), filepath.Base(target)
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return
	}
	prefix := "." + base + ".keyguard-"
	for _, n := range names {
		rest, ok := strings.CutPrefix(n, prefix)
		if !ok {
			continue
		}
		var pid int
		if _, err := fmt.Sscanf(rest, "%d-", &pid); err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			syscall.Unlinkat(int(d.Fd()), n)
		}
	}
}
