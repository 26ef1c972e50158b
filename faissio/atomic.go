package faissio

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
)

// WriteFileAtomic replaces the file at path with what write puts into f, so
// that readers, and a crash at any moment, see either the old file or the
// complete new one, never a prefix of it.
//
// f is a new temporary file in path's directory (the same filesystem, so
// the final rename is atomic). After write returns nil, WriteFileAtomic
// syncs f to disk, closes it and renames it over path; write must not close
// f itself. If write returns an error, that error is returned unchanged; if
// write panics, the panic continues after cleanup. On any failure the
// temporary file is removed and an existing file at path is left untouched.
// Errors of WriteFileAtomic's own are one line starting with path.
//
// A replaced file keeps its permission bits; a new one gets 0666 less the
// umask, as with os.Create. If path is a symbolic link, the link itself is
// replaced, not the file it points to.
func WriteFileAtomic(path string, write func(f *os.File) error) error {
	dir := filepath.Dir(path)
	f, err := createTemp(dir, filepath.Base(path))
	if err != nil {
		return createError(path, dir, err)
	}
	tmp := f.Name()
	pending.Store(tmp, struct{}{})
	renamed := false
	defer func() {
		// Runs on errors and on panics alike: the deferred cleanup is what
		// makes a panicking write leave nothing behind before it unwinds
		// further.
		if !renamed {
			f.Close()
			os.Remove(tmp)
		}
		pending.Delete(tmp)
	}()

	if err := write(f); err != nil {
		return err
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
		if err := f.Chmod(fi.Mode().Perm()); err != nil {
			return fmt.Errorf("%s: %w", path, unwrapPathError(err))
		}
	}
	// Without the sync, a crash soon after the rename can leave path naming
	// a file whose blocks never reached the disk: an empty or torn file
	// where the old one used to be.
	if err := f.Sync(); err != nil {
		return fmt.Errorf("%s: sync: %w", path, unwrapPathError(err))
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("%s: close: %w", path, unwrapPathError(err))
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("%s: cannot replace: %w", path, unwrapPathError(err))
	}
	renamed = true
	syncDir(dir)
	return nil
}

// pending holds the temporary files of writes in progress, for
// RemovePending.
var pending sync.Map

// RemovePending removes the temporary files of every WriteFileAtomic still in
// progress. A program that must exit at once (on a second Ctrl-C, say) calls
// it so that no half-written file stays behind.
func RemovePending() {
	pending.Range(func(k, _ any) bool {
		os.Remove(k.(string))
		return true
	})
}

// createTemp is os.CreateTemp with mode 0666 instead of 0600, so that the
// renamed file gets the permissions a plain os.Create would have given it.
// The name is hidden and does not end in the target's extension, so that a
// directory or glob of *.npy shards never picks up a half-written file.
func createTemp(dir, base string) (*os.File, error) {
	for range 1000 {
		name := filepath.Join(dir, "."+base+".tmp-"+strconv.FormatUint(rand.Uint64(), 36))
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, err
	}
	return nil, errors.New("cannot find an unused temporary file name")
}

// createError turns a failure to create the temporary file into a message
// about path and its directory; the temporary name would only confuse.
func createError(path, dir string, err error) error {
	err = unwrapPathError(err)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return explained{fmt.Sprintf("%s: cannot create: directory %s does not exist", path, dir), err}
	case errors.Is(err, fs.ErrPermission):
		return explained{fmt.Sprintf("%s: cannot create: no permission to write in directory %s", path, dir), err}
	case errors.Is(err, syscall.ENOTDIR):
		return explained{fmt.Sprintf("%s: cannot create: %s is not a directory", path, dir), err}
	}
	return fmt.Errorf("%s: cannot create: %w", path, err)
}

// explained is an error whose message says in words what err, kept for
// errors.Is, means in context.
type explained struct {
	msg string
	err error
}

func (e explained) Error() string { return e.msg }
func (e explained) Unwrap() error { return e.err }

// syncDir makes the rename itself durable. It is best effort: the new file
// is already in place, and some filesystems refuse to sync directories.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	d.Sync()
	d.Close()
}

// unwrapPathError drops the operation and file names of an *fs.PathError
// or *os.LinkError, so that messages can name the file the caller knows
// about and still satisfy errors.Is(err, fs.ErrNotExist) and the like.
func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}
