package faissio

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ReadVectors reads a float matrix from path, which is one of:
//   - a .npy file (see ReadNpy);
//   - a .fvecs file (see ReadFvecs);
//   - a directory: all *.npy files in it, except hidden ones, sorted by
//     name and concatenated as one matrix;
//   - a glob pattern, used only when no file is named path literally: the
//     matching files, except hidden ones and directories, sorted by name
//     and concatenated likewise, or read as a single path if there is one.
//
// Names sort as strings, so shards numbered past 9 need zero padding
// (part-02.npy before part-10.npy). Concatenated files must agree on the
// column count. Every value is checked finite (CheckFinite), with errors
// naming the file the value is in and its row there.
//
// Parquet files are read too, by their only list column of floats
// (ReadVectorsWith names another).
func ReadVectors(path string) (Matrix, error) { return ReadVectorsWith(path, SourceOptions{}) }

// readVectorFiles reads the .npy or .fvecs files at path (not Parquet).
func readVectorFiles(path string) (Matrix, error) {
	files, err := vectorFiles(path)
	if err != nil {
		return Matrix{}, err
	}
	if len(files) > 1 {
		return readNpyShards(files)
	}
	var m Matrix
	switch name := files[0]; filepath.Ext(name) {
	case ".npy":
		m, err = ReadNpy(name)
	case ".fvecs":
		m, err = ReadFvecs(name)
	default:
		return Matrix{}, fmt.Errorf("%s: unknown vector file type %q (want .npy, .fvecs, a directory of .npy files or a glob of them)", name, filepath.Ext(name))
	}
	if err != nil {
		return Matrix{}, err
	}
	if err := CheckFinite(m, files[0]); err != nil {
		return Matrix{}, err
	}
	return m, nil
}

// vectorFiles expands path into the files ReadVectors reads, sorted.
func vectorFiles(path string) ([]string, error) {
	fi, err := os.Stat(path)
	switch {
	case err == nil && fi.IsDir():
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, pathError(path, err)
		}
		var files []string
		for _, e := range entries {
			// Hidden files are skipped because they are other tools'
			// leftovers: WriteFileAtomic's temporary files, macOS's "._x.npy".
			if name := e.Name(); strings.HasSuffix(name, ".npy") && !strings.HasPrefix(name, ".") && !e.IsDir() {
				files = append(files, filepath.Join(path, name))
			}
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("%s: no .npy files in directory", path)
		}
		return files, nil // os.ReadDir sorts by name
	case err == nil:
		return []string{path}, nil
	case errors.Is(err, fs.ErrNotExist) && strings.ContainsAny(path, `*?[\`):
		matches, err := filepath.Glob(path)
		if err != nil {
			return nil, fmt.Errorf("%s: bad glob pattern", path)
		}
		// As in a shell, and as for a directory, "*" does not match hidden
		// files; filepath.Glob would.
		hiddenOK := strings.HasPrefix(filepath.Base(path), ".")
		var files []string
		for _, name := range matches {
			if strings.HasPrefix(filepath.Base(name), ".") && !hiddenOK {
				continue
			}
			if fi, err := os.Stat(name); err == nil && fi.IsDir() {
				continue
			}
			files = append(files, name)
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("%s: no files match", path)
		}
		// Glob sorts within each directory only; a pattern spanning
		// directories needs the whole list sorted.
		slices.Sort(files)
		return files, nil
	}
	return nil, pathError(path, err)
}

// readNpyShards reads and concatenates the .npy files. Headers are checked
// first, so that a column mismatch in the last shard fails before gigabytes
// are read, and the result is allocated once, at its final size.
func readNpyShards(files []string) (Matrix, error) {
	rows := make([]int, len(files))
	var m Matrix
	for i, name := range files {
		if filepath.Ext(name) != ".npy" {
			return Matrix{}, fmt.Errorf("%s: only .npy files can be concatenated", name)
		}
		r, c, err := npyMatrixShape(name)
		if err != nil {
			return Matrix{}, err
		}
		if i > 0 && c != m.Cols {
			return Matrix{}, fmt.Errorf("%s: %d columns, but %s has %d", name, c, files[0], m.Cols)
		}
		if m.Rows > math.MaxInt-r {
			return Matrix{}, fmt.Errorf("%s: more rows in all than an int counts", name)
		}
		rows[i], m.Cols = r, c
		m.Rows += r
	}
	n, ok := mulInt(m.Rows, m.Cols)
	if !ok {
		return Matrix{}, fmt.Errorf("%s: %d rows of %d columns in all, more values than an int counts", files[0], m.Rows, m.Cols)
	}
	m.Data = make([]float32, n)
	at := 0
	for i, name := range files {
		part, _, err := readNpyInto(name, m.Data[at*m.Cols:(at+rows[i])*m.Cols])
		if err != nil {
			return Matrix{}, err
		}
		if part.Rows != rows[i] || part.Cols != m.Cols {
			return Matrix{}, fmt.Errorf("%s: changed while being read", name)
		}
		if err := CheckFinite(part, name); err != nil {
			return Matrix{}, err
		}
		at += rows[i]
	}
	return m, nil
}

// npyMatrixShape returns the shape of the float matrix in the .npy file
// name, checking all that can be checked without reading the data.
func npyMatrixShape(name string) (rows, cols int, err error) {
	f, err := os.Open(name)
	if err != nil {
		return 0, 0, pathError(name, err)
	}
	defer f.Close()
	h, err := readNpyHeader(f, name)
	if err != nil {
		return 0, 0, err
	}
	if err := h.checkFloatMatrix(); err != nil {
		return 0, 0, err
	}
	return h.shape[0], h.shape[1], nil
}

// ReadFvecs reads a .fvecs file: for each row, its dimension as a
// little-endian int32, then that many float32 values. All rows must have the
// same dimension.
func ReadFvecs(path string) (Matrix, error) {
	rows, cols, data, err := readVecs[float32](path)
	return Matrix{Rows: rows, Cols: cols, Data: data}, err
}

// ReadIvecs reads an .ivecs file, such as the ground truth of the TEXMEX
// benchmarks (SIFT, GIST): for each row, its dimension as a little-endian
// int32, then that many int32 values. All rows must have the same dimension.
func ReadIvecs(path string) (rows, cols int, data []int32, err error) {
	return readVecs[int32](path)
}

// readVecs reads the .fvecs or .ivecs file at path. The file size fixes
// the row count once row 0 gives the dimension, so the data is allocated
// once and never beyond what the file holds.
func readVecs[T float32 | int32](path string) (rows, cols int, data []T, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, nil, pathError(path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, nil, pathError(path, err)
	}
	if !fi.Mode().IsRegular() {
		return 0, 0, nil, fmt.Errorf("%s: not a regular file", path)
	}
	size := fi.Size()
	if size == 0 {
		return 0, 0, nil, fmt.Errorf("%s: empty file", path)
	}

	br := bufio.NewReaderSize(f, 1<<20)
	var dimBytes [4]byte
	if _, err := io.ReadFull(br, dimBytes[:]); err != nil {
		return 0, 0, nil, vecsReadError(path, 0, err)
	}
	dim := int64(int32(binary.LittleEndian.Uint32(dimBytes[:])))
	if dim <= 0 {
		return 0, 0, nil, fmt.Errorf("%s: row 0: invalid dimension %d", path, dim)
	}
	rowBytes := 4 + 4*dim
	if rowBytes > size {
		return 0, 0, nil, fmt.Errorf("%s: truncated: row 0 of dimension %d needs %d bytes but the file has only %d", path, dim, rowBytes, size)
	}
	cols = int(dim)
	rows = int(size / rowBytes)
	data = make([]T, rows*cols)

	for i := range rows {
		if i > 0 {
			if _, err := io.ReadFull(br, dimBytes[:]); err != nil {
				return 0, 0, nil, vecsReadError(path, i, err)
			}
			if d := int32(binary.LittleEndian.Uint32(dimBytes[:])); int64(d) != dim {
				return 0, 0, nil, fmt.Errorf("%s: row %d has dimension %d, but row 0 has %d", path, i, d, dim)
			}
		}
		if _, err := io.ReadFull(br, asBytes(data[i*cols:(i+1)*cols])); err != nil {
			return 0, 0, nil, vecsReadError(path, i, err)
		}
	}
	if rest := size - int64(rows)*rowBytes; rest > 0 {
		// The last, partial row: a dimension that differs is the likelier
		// story (concatenated files of different dimensions), so check it
		// before calling the row truncated.
		if rest >= 4 {
			if _, err := io.ReadFull(br, dimBytes[:]); err != nil {
				return 0, 0, nil, vecsReadError(path, rows, err)
			}
			if d := int32(binary.LittleEndian.Uint32(dimBytes[:])); int64(d) != dim {
				return 0, 0, nil, fmt.Errorf("%s: row %d has dimension %d, but row 0 has %d", path, rows, d, dim)
			}
		}
		return 0, 0, nil, fmt.Errorf("%s: truncated: row %d has %d of its %d bytes", path, rows, rest, rowBytes)
	}
	return rows, cols, data, nil
}

// vecsReadError describes a read that failed although the file size said
// the bytes were there.
func vecsReadError(path string, row int, err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("%s: row %d: file shrank while being read", path, row)
	}
	return fmt.Errorf("%s: row %d: read: %w", path, row, unwrapPathError(err))
}
