package faissio

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
)

// Source is a collection of vectors on disk, read by blocks of rows: a
// collection larger than memory is never copied whole, and float16 data
// stays float16 on disk until a block of it is converted. It accepts the
// paths ReadVectors accepts (a .npy file, a folder or glob of .npy shards,
// an .fvecs file) with the same checks, and a Source's rows are exactly the
// rows ReadVectors returns. MatrixSource makes one of a matrix in memory
// instead, so that code written for files takes vectors computed in the
// same process.
//
// A Source of .npy or .fvecs files holds no open files; each read opens
// what it needs, so a Source may be read from several goroutines at once.
// A Source of Parquet files keeps a few files open between reads, each at
// the page where a read stopped, so that a read of the rows that follow
// does not decode the row group again from its start; it is as safe to
// share, and the files close when it is collected.
type Source struct {
	Rows, Cols int
	parts      []sourcePart
	mem        *Matrix // the rows, for a Source in memory; parts is then empty
	err        error   // why RowsSource could not make a matrix, or nil
}

// readChunkBytes bounds the raw bytes that Read holds at once beside its
// destination, whatever the number of rows asked for (at least one row is
// read at a time); a variable so that tests can make chunks of a few rows.
var readChunkBytes int64 = 16 << 20

// MatrixSource makes a Source of m's rows, for callers that take a Source
// (a streamed build, an exact search) and hold their vectors in memory.
// Read and Gather copy from m and check the values as a file's are,
// naming the input "matrix" ("matrix: row 3, column 1 is NaN"). m is not
// copied and must not change while the Source is in use; as with a file,
// concurrent reads are safe. MatrixSource panics if len(m.Data) is not
// m.Rows*m.Cols, a matrix NewMatrix would refuse.
func MatrixSource(m Matrix) *Source {
	if n, ok := mulInt(m.Rows, m.Cols); !ok || m.Cols < 1 || len(m.Data) != n {
		panic(fmt.Sprintf("faissio: MatrixSource of a %d x %d matrix with %d values", m.Rows, m.Cols, len(m.Data)))
	}
	return &Source{Rows: m.Rows, Cols: m.Cols, mem: &m}
}

// RowsSource makes a Source of a program's own vectors, one []float32 per
// row, copied into one matrix (MatrixFromRows). Rows that cannot form a
// matrix (none, or of different lengths) give an empty Source whose Err
// says why, as do its reads, so a caller can hand the rows straight to
// code that takes a Source and check one error at the end, as with
// bufio.Scanner.
func RowsSource(rows [][]float32) *Source {
	m, err := MatrixFromRows(rows)
	if err != nil {
		return &Source{err: err}
	}
	return MatrixSource(m)
}

// Err is the error of a RowsSource whose rows could not form a matrix, or
// nil.
func (s *Source) Err() error { return s.err }

// Slice is the Source of rows [i, j) of s, sharing its files (or matrix):
// one shard of a collection, read by a worker as it would read the whole.
// Errors still name each file's own row numbers.
func (s *Source) Slice(i, j int) (*Source, error) {
	if s.err != nil {
		return nil, s.err
	}
	if i < 0 || j > s.Rows || i > j {
		return nil, fmt.Errorf("rows [%d, %d) of a source of %d", i, j, s.Rows)
	}
	if s.mem != nil {
		return MatrixSource(s.mem.Slice(i, j)), nil
	}
	out := &Source{Rows: j - i, Cols: s.Cols}
	for _, p := range s.parts {
		lo, hi := max(i, p.first), min(j, p.first+p.rows)
		if lo >= hi {
			continue
		}
		q := p
		q.skip += lo - p.first
		q.first, q.rows = lo-i, hi-lo
		out.parts = append(out.parts, q)
	}
	return out, nil
}

// Matrix returns the matrix a MatrixSource holds, without copying it, so
// that a caller with a fast path for memory (one product over all rows)
// can skip the copies Read makes; ok is false for a Source of files.
func (s *Source) Matrix() (m Matrix, ok bool) {
	if s.mem == nil {
		return Matrix{}, false
	}
	return *s.mem, true
}

// sourcePart is one file of a Source.
type sourcePart struct {
	path        string
	first, rows int   // the part's rows are [first, first+rows) of the Source
	skip        int   // and the file's rows [skip, skip+rows) (Slice)
	offset      int64 // of row 0's data
	rowBytes    int64 // distance between rows in the file
	elem        int   // bytes per value: 2, 4 or 8
	bigEndian   bool
	fvecs       bool // rows are prefixed by their dimension
	// pq is set for a Parquet file, whose rows are read page by page;
	// offset, rowBytes and elem then mean nothing.
	pq *parquetPart
}

// OpenSource reads the headers of the files at path and checks that they
// form one matrix; the data is read by Read and Gather. Parquet files are
// read too, their vector column being the only list column of floats
// (OpenSourceWith names another).
func OpenSource(path string) (*Source, error) { return OpenSourceWith(path, SourceOptions{}) }

// openFileSource opens the .npy or .fvecs files at path (not Parquet).
func openFileSource(path string) (*Source, error) {
	files, err := vectorFiles(path)
	if err != nil {
		return nil, err
	}
	s := &Source{}
	for i, name := range files {
		p, cols, err := openPart(name, len(files) > 1)
		if err != nil {
			return nil, err
		}
		if i > 0 && cols != s.Cols {
			return nil, fmt.Errorf("%s: %d columns, but %s has %d", name, cols, files[0], s.Cols)
		}
		if s.Rows > math.MaxInt-p.rows {
			return nil, fmt.Errorf("%s: more rows in all than an int counts", name)
		}
		p.first = s.Rows
		s.Cols = cols
		s.Rows += p.rows
		s.parts = append(s.parts, p)
	}
	return s, nil
}

// openPart reads the header of one file.
func openPart(name string, shard bool) (sourcePart, int, error) {
	switch ext := filepath.Ext(name); {
	case ext == ".npy":
	case ext == ".fvecs" && !shard:
		return openFvecsPart(name)
	case shard:
		return sourcePart{}, 0, fmt.Errorf("%s: only .npy files can be concatenated", name)
	default:
		return sourcePart{}, 0, fmt.Errorf("%s: unknown vector file type %q (want .npy, .fvecs, a directory of .npy files or a glob of them)", name, ext)
	}
	f, err := os.Open(name)
	if err != nil {
		return sourcePart{}, 0, pathError(name, err)
	}
	defer f.Close()
	h, err := readNpyHeader(f, name)
	if err != nil {
		return sourcePart{}, 0, err
	}
	if err := h.checkFloatMatrix(); err != nil {
		return sourcePart{}, 0, err
	}
	dt := h.dtype()
	cols := h.shape[1]
	return sourcePart{path: name, rows: h.shape[0], offset: h.offset, rowBytes: int64(cols) * int64(dt.size),
		elem: dt.size, bigEndian: dt.bigEndian}, cols, nil
}

// openFvecsPart reads the first dimension of an .fvecs file and checks that
// the file size is a whole number of rows; every row's own dimension is
// checked as it is read.
func openFvecsPart(name string) (sourcePart, int, error) {
	f, err := os.Open(name)
	if err != nil {
		return sourcePart{}, 0, pathError(name, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return sourcePart{}, 0, pathError(name, err)
	}
	var b [4]byte
	if _, err := io.ReadFull(f, b[:]); err != nil {
		return sourcePart{}, 0, fmt.Errorf("%s: empty or truncated file", name)
	}
	dim := int64(int32(binary.LittleEndian.Uint32(b[:])))
	if dim <= 0 {
		return sourcePart{}, 0, fmt.Errorf("%s: row 0: invalid dimension %d", name, dim)
	}
	rowBytes := 4 + 4*dim
	if fi.Size()%rowBytes != 0 {
		return sourcePart{}, 0, fmt.Errorf("%s: truncated: %d bytes is not a whole number of rows of dimension %d", name, fi.Size(), dim)
	}
	return sourcePart{path: name, rows: int(fi.Size() / rowBytes), offset: 0, rowBytes: rowBytes, elem: 4, fvecs: true}, int(dim), nil
}

// Read converts rows [i, j) into dst, which must hold (j-i)*Cols values.
// Values are checked finite, with errors naming the file and its row. The
// file is read a chunk of about 16 MiB at a time, so that reading all rows
// at once holds dst and not a second, raw copy of them.
func (s *Source) Read(i, j int, dst []float32) error {
	if s.err != nil {
		return s.err
	}
	if n, ok := mulInt(j-i, s.Cols); i < 0 || j > s.Rows || !ok || len(dst) != n {
		return fmt.Errorf("faissio: Source.Read(%d, %d) with room for %d values, of %d rows of %d", i, j, len(dst), s.Rows, s.Cols)
	}
	if s.mem != nil {
		return s.readMatrix(i, j, dst)
	}
	var buf []byte
	for _, p := range s.parts {
		lo, hi := max(i, p.first), min(j, p.first+p.rows)
		if lo >= hi {
			continue
		}
		if p.pq != nil {
			if err := p.pq.read(lo-p.first+p.skip, hi-p.first+p.skip, dst[(lo-i)*s.Cols:(hi-i)*s.Cols], s.Cols); err != nil {
				return err
			}
			continue
		}
		f, err := os.Open(p.path)
		if err != nil {
			return pathError(p.path, err)
		}
		buf, err = p.read(f, lo-p.first+p.skip, hi-p.first+p.skip, dst[(lo-i)*s.Cols:(hi-i)*s.Cols], s.Cols, buf)
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// CheckFinite reads every row once, a block at a time, and returns the
// error Read gives for the first NaN or infinite value, if any: a streamed
// build checks its whole input before training rather than finding a bad
// row after it.
func (s *Source) CheckFinite() error {
	if s.err != nil {
		return s.err
	}
	if s.mem != nil {
		return CheckFinite(*s.mem, "matrix")
	}
	block := max(1, (16<<20)/(4*s.Cols))
	buf := make([]float32, min(block, s.Rows)*s.Cols)
	for i := 0; i < s.Rows; i += block {
		j := min(i+block, s.Rows)
		if err := s.Read(i, j, buf[:(j-i)*s.Cols]); err != nil {
			return err
		}
	}
	return nil
}

// Gather converts the given rows, in ascending order, into dst, which must
// hold len(rows)*Cols values; runs of consecutive rows are read at once.
func (s *Source) Gather(rows []int, dst []float32) error {
	if n, ok := mulInt(len(rows), s.Cols); !ok || len(dst) != n {
		return fmt.Errorf("faissio: Source.Gather of %d rows with room for %d values", len(rows), len(dst))
	}
	for k := 0; k < len(rows); {
		run := 1
		for k+run < len(rows) && rows[k+run] == rows[k]+run {
			run++
		}
		if k > 0 && rows[k] <= rows[k-1] {
			return fmt.Errorf("faissio: Source.Gather: rows not ascending at %d", k)
		}
		if err := s.Read(rows[k], rows[k]+run, dst[k*s.Cols:(k+run)*s.Cols]); err != nil {
			return err
		}
		k += run
	}
	return nil
}

// readMatrix copies rows [i, j) of a Source in memory into dst, checking
// them as a file's rows are checked.
func (s *Source) readMatrix(i, j int, dst []float32) error {
	copy(dst, s.mem.Data[i*s.Cols:j*s.Cols])
	for k, v := range dst {
		if what := nonFinite(v); what != "" {
			return fmt.Errorf("matrix: row %d, column %d is %s", i+k/s.Cols, k%s.Cols, what)
		}
	}
	return nil
}

// read converts the part's rows [i, j) into dst, a chunk of at most
// readChunkBytes (or one row) at a time, reusing buf.
func (p *sourcePart) read(f *os.File, i, j int, dst []float32, cols int, buf []byte) ([]byte, error) {
	per := int(max(1, readChunkBytes/p.rowBytes))
	for lo := i; lo < j; lo += per {
		hi := min(j, lo+per)
		var err error
		buf, err = p.readChunk(f, lo, hi, dst[(lo-i)*cols:(hi-i)*cols], cols, buf)
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// readChunk converts the part's rows [i, j) into dst, reading them at once
// into buf, which it grows if needed.
func (p *sourcePart) readChunk(f *os.File, i, j int, dst []float32, cols int, buf []byte) ([]byte, error) {
	n := int64(j-i) * p.rowBytes
	if int64(cap(buf)) < n {
		buf = make([]byte, n)
	}
	b := buf[:n]
	if _, err := f.ReadAt(b, p.offset+int64(i)*p.rowBytes); err != nil {
		if err == io.EOF {
			return buf, fmt.Errorf("%s: file shrank while being read", p.path)
		}
		return buf, pathError(p.path, err)
	}
	order := binary.ByteOrder(binary.LittleEndian)
	if p.bigEndian {
		order = binary.BigEndian
	}
	for r := range j - i {
		row := b[int64(r)*p.rowBytes : int64(r+1)*p.rowBytes]
		if p.fvecs {
			if d := int32(binary.LittleEndian.Uint32(row)); int(d) != cols {
				return buf, fmt.Errorf("%s: row %d has dimension %d, but row 0 has %d", p.path, i+r, d, cols)
			}
			row = row[4:]
		}
		out := dst[r*cols : (r+1)*cols]
		if c := decodeFloats(out, row, p.elem, order); c >= 0 {
			return buf, fmt.Errorf("%s: row %d, column %d: float64 value %g does not fit in float32", p.path, i+r, c, math.Float64frombits(order.Uint64(row[8*c:])))
		}
		for c, v := range out {
			if what := nonFinite(v); what != "" {
				return buf, fmt.Errorf("%s: row %d, column %d is %s", p.path, i+r, c, what)
			}
		}
	}
	return buf, nil
}
