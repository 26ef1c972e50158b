package faissio

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
)

// dirNames lists dir, so tests can see that no temporary file is left.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.bin")
	err := WriteFileAtomic(path, func(f *os.File) error {
		_, err := f.WriteString("new")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "new" {
		t.Errorf("got %q", b)
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{"out.bin"}) {
		t.Errorf("directory holds %v", names)
	}
	// A new file gets what os.Create would give it, not CreateTemp's 0600.
	umask := syscall.Umask(0)
	syscall.Umask(umask)
	if fi, _ := os.Stat(path); fi.Mode().Perm() != fs.FileMode(0o666&^umask) {
		t.Errorf("new file has mode %v, want %v", fi.Mode().Perm(), fs.FileMode(0o666&^umask))
	}

	// A replaced file keeps its mode.
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(path, func(f *os.File) error { _, err := f.WriteString("newer"); return err }); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if b, _ := os.ReadFile(path); string(b) != "newer" || fi.Mode().Perm() != 0o640 {
		t.Errorf("got %q with mode %v, want \"newer\" with -rw-r-----", b, fi.Mode().Perm())
	}
}

func TestWriteFileAtomicFailureLeavesOldFile(t *testing.T) {
	dir := t.TempDir()
	path := writeTemp(t, dir, "out.npy", []byte("old"))
	errWrite := errors.New("disk on fire")
	err := WriteFileAtomic(path, func(f *os.File) error {
		f.WriteString("half of the new")
		return errWrite
	})
	if err != errWrite {
		t.Errorf("got error %v, want write's own error unchanged", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "old" {
		t.Errorf("existing file now holds %q", b)
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{"out.npy"}) {
		t.Errorf("directory holds %v", names)
	}
}

func TestWriteFileAtomicPanicLeavesOldFile(t *testing.T) {
	dir := t.TempDir()
	path := writeTemp(t, dir, "out.npy", []byte("old"))
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v, want write's panic value", r)
			}
		}()
		WriteFileAtomic(path, func(f *os.File) error {
			f.WriteString("half of the new")
			panic("boom")
		})
		t.Error("WriteFileAtomic returned after write panicked")
	}()
	if b, _ := os.ReadFile(path); string(b) != "old" {
		t.Errorf("existing file now holds %q", b)
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{"out.npy"}) {
		t.Errorf("directory holds %v", names)
	}
}

func TestWriteFileAtomicErrors(t *testing.T) {
	dir := t.TempDir()
	called := false
	write := func(f *os.File) error { called = true; return nil }

	missing := filepath.Join(dir, "nodir", "x.npy")
	err := WriteFileAtomic(missing, write)
	wantErr(t, err, missing, "cannot create: directory "+filepath.Join(dir, "nodir")+" does not exist")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("errors.Is(%v, fs.ErrNotExist) = false", err)
	}

	file := writeTemp(t, dir, "file", nil)
	under := filepath.Join(file, "x.npy")
	err = WriteFileAtomic(under, write)
	wantErr(t, err, under, "cannot create: "+file+" is not a directory")

	// Replacing a directory fails at the rename; the temporary file goes.
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o777)
	writeTemp(t, sub, "keep", []byte("x"))
	err = WriteFileAtomic(sub, write)
	wantErr(t, err, sub, "cannot replace: file exists")
	if names := dirNames(t, dir); !slices.Equal(names, []string{"file", "sub"}) {
		t.Errorf("directory holds %v", names)
	}

	if called != true {
		t.Error("write was never called")
	}

	if os.Geteuid() == 0 {
		t.Log("running as root: the permission check cannot fail")
		return
	}
	ro := filepath.Join(dir, "ro")
	os.Mkdir(ro, 0o555)
	path := filepath.Join(ro, "x.npy")
	err = WriteFileAtomic(path, write)
	wantErr(t, err, path, "cannot create: no permission to write in directory "+ro)
}

func TestWriteNpyFailureLeavesOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.npy")
	old := randomMatrix(3, 2, 6)
	if err := WriteNpy(path, old); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "nodir", "m.npy")
	err := WriteNpy(missing, old)
	wantErr(t, err, missing, "cannot create: directory "+filepath.Join(dir, "nodir")+" does not exist")
	err = WriteNpy(path, Matrix{Rows: 3, Cols: 2})
	wantErr(t, err, path, "matrix is 3x2 but has 0 values")
	m, err := ReadNpy(path)
	if err != nil {
		t.Fatal(err)
	}
	equalMatrix(t, m, old)
}
