// Package ledger keeps ods-keyguard's own state in state_dir: backup
// ceremonies, open and past, and the DS submissions the hook withheld. Every
// file is written atomically and carries a checksum, so a crash leaves the
// old state or the new one, and a damaged or hand-edited file is reported
// by name instead of being replaced.
package ledger

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// envelope is the on-disk form of every state file.
type envelope struct {
	Format string          `json:"format"`
	SHA256 string          `json:"sha256"`
	Data   json.RawMessage `json:"data"`
}

// CorruptError is a state file that cannot be trusted.
type CorruptError struct {
	Path   string
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("state file %s: %s: move it aside or restore it; ods-keyguard does not replace it", e.Path, e.Reason)
}

// load reads path into v. A missing file leaves v as it is and is no error.
func load(path, format string, v any) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("state file %s: %w", path, errors.Unwrap(err))
	}
	var env envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return &CorruptError{path, "not valid JSON (" + err.Error() + ")"}
	}
	if env.Format != format {
		return &CorruptError{path, fmt.Sprintf("format %q, want %q", env.Format, format)}
	}
	// The checksum is over the compact form: indentation is not content.
	var compact bytes.Buffer
	if err := json.Compact(&compact, env.Data); err != nil {
		return &CorruptError{path, "not valid JSON (" + err.Error() + ")"}
	}
	sum := sha256.Sum256(compact.Bytes())
	if hex.EncodeToString(sum[:]) != env.SHA256 {
		return &CorruptError{path, "checksum mismatch (damaged or edited by hand)"}
	}
	if err := json.Unmarshal(env.Data, v); err != nil {
		return &CorruptError{path, "unreadable data (" + err.Error() + ")"}
	}
	return nil
}

// store writes v to path atomically: a temporary file in the same folder,
// fsync, rename over path, fsync of the folder.
func store(path, format string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	b, err := json.MarshalIndent(envelope{Format: format, SHA256: hex.EncodeToString(sum[:]), Data: data}, "", " ")
	if err != nil {
		return err
	}
	return WriteAtomic(path, append(b, '\n'), 0o600)
}

// WriteAtomic replaces path with data so that a reader, or a crash, sees
// either the old file or the new one, never a part.
func WriteAtomic(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer d.Close()
	if err = d.Sync(); err != nil {
		return fmt.Errorf("write %s: sync folder: %w", path, err)
	}
	return nil
}
