package faissio

// Parquet collections are read with github.com/parquet-go/parquet-go: a
// page at a time, so that a read holds the pages it is decoding (a page is
// at most a row group's column chunk, and about 1 MiB as the common
// writers make them) beside its destination, never a whole file. The
// README's "Parquet" section gives the measurements that chose it over
// arrow-go's reader.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/deprecated"
	"github.com/parquet-go/parquet-go/format"
)

// SourceOptions say which columns of a Parquet collection hold what; they
// mean nothing to .npy and .fvecs files, and naming a column for those is
// an error.
type SourceOptions struct {
	// Column is the vector column, a list (or fixed-size list) of float32,
	// float16 or float64; "" picks the only such column of the files.
	// Columns inside a struct are named by their dotted path ("a.emb").
	Column string
}

// OpenSourceWith is OpenSource with options: path may also be a .parquet
// file, a folder of them or a glob of them (mixed with no other kind of
// vector file), whose rows are the vector column's lists, in file order
// and then row order. Every file must hold the column, with lists of one
// length d, no null list and no null value; floats of any width are
// converted to float32 as for .npy.
//
// Opening reads each file's footer, and the first row of the first file to
// learn d: the row groups' value counts then show, without reading their
// data, which row group holds a list of another length, and only that row
// group is read, to name the row. Nulls, and lengths that happen to add up,
// are found when the rows are read.
func OpenSourceWith(path string, o SourceOptions) (*Source, error) {
	files, ok, err := parquetFiles(path)
	if err != nil {
		return nil, err
	}
	if !ok {
		if o.Column != "" {
			return nil, fmt.Errorf("%s: a vector column was named, but only Parquet files have columns", path)
		}
		return openFileSource(path)
	}
	return openParquetSource(files, o)
}

// ReadVectorsWith reads the matrix at path as ReadVectors does, and also a
// Parquet file, folder or glob, read through OpenSourceWith: for queries,
// which are held in memory whole.
func ReadVectorsWith(path string, o SourceOptions) (Matrix, error) {
	if _, ok, err := parquetFiles(path); err != nil || !ok {
		if err == nil && o.Column != "" {
			err = fmt.Errorf("%s: a vector column was named, but only Parquet files have columns", path)
		}
		if err != nil {
			return Matrix{}, err
		}
		return readVectorFiles(path)
	}
	s, err := OpenSourceWith(path, o)
	if err != nil {
		return Matrix{}, err
	}
	n, ok := mulInt(s.Rows, s.Cols)
	if !ok {
		return Matrix{}, fmt.Errorf("%s: %d x %d vectors are more values than an int counts", path, s.Rows, s.Cols)
	}
	m := Matrix{Rows: s.Rows, Cols: s.Cols, Data: make([]float32, n)}
	return m, s.Read(0, s.Rows, m.Data)
}

// IsParquet reports whether path names Parquet files (a .parquet file, a
// folder holding some, or a glob matching some), for callers that take
// options only Parquet has.
func IsParquet(path string) bool {
	_, ok, _ := parquetFiles(path)
	return ok
}

// parquetFiles expands path into the Parquet files it names, sorted; ok is
// false when it names none, and path is then for ReadVectors' rules. In a
// folder, hidden files and those starting with "_" are skipped (Spark's
// _SUCCESS, Hive's _metadata), as are files of other kinds, but a folder
// or glob with both Parquet and .npy or .fvecs files is refused: which were
// meant cannot be told.
func parquetFiles(path string) (files []string, ok bool, err error) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, false, pathError(path, err)
		}
		other := ""
		for _, e := range entries {
			name := e.Name()
			if e.IsDir() || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
				continue
			}
			switch filepath.Ext(name) {
			case ".parquet":
				files = append(files, filepath.Join(path, name))
			case ".npy", ".fvecs":
				other = name
			}
		}
		if len(files) > 0 && other != "" {
			return nil, false, fmt.Errorf("%s: holds both .parquet files and %s: give a folder of one kind", path, other)
		}
		return files, len(files) > 0, nil // os.ReadDir sorts by name
	}
	if filepath.Ext(path) == ".parquet" {
		if _, err := os.Stat(path); err == nil {
			return []string{path}, true, nil
		}
	}
	all, err := vectorFiles(path)
	if err != nil {
		// ReadVectors gives the same error for a path it cannot expand.
		return nil, false, nil
	}
	var other string
	for _, f := range all {
		switch base := filepath.Base(f); {
		case filepath.Ext(f) == ".parquet":
			files = append(files, f)
		case !strings.HasPrefix(base, "_") && !strings.HasPrefix(base, "."):
			other = f
		}
	}
	if len(files) > 0 && other != "" {
		return nil, false, fmt.Errorf("%s: matches both .parquet files and %s: give files of one kind", path, other)
	}
	return files, len(files) > 0, nil
}

// parquetFloat is the width of the vector column's values.
type parquetFloat int

const (
	pqFloat32 parquetFloat = iota
	pqFloat16
	pqFloat64
)

func (k parquetFloat) String() string {
	return [...]string{"float32", "float16", "float64"}[k]
}

// parquetPart is what a Source knows of one Parquet file: where its vector
// column is and how its levels say null, empty and present.
type parquetPart struct {
	path   string
	column string // as named in messages
	leaf   int    // the column's index among the file's leaf columns
	kind   parquetFloat
	// A definition level below nullDef is a null list (or a null struct
	// above it), below emptyDef an empty list, below maxDef a null value.
	nullDef, emptyDef, maxDef int
	groups                    []int64 // first row of each row group, and the total
	cursors                   *parquetCursors
}

// parquetSchema is the vector column of one file, as found in its schema.
type parquetSchema struct {
	name                      string
	leaf                      int
	kind                      parquetFloat
	nullDef, emptyDef, maxDef int
}

// openParquetSource reads the footers of files and checks that they form
// one matrix.
func openParquetSource(files []string, o SourceOptions) (*Source, error) {
	s := &Source{}
	cursors := newParquetCursors()
	for _, name := range files {
		pf, f, err := openParquetFile(name)
		if err != nil {
			return nil, err
		}
		sch, err := findVectorColumn(name, pf, o.Column)
		f.Close()
		if err != nil {
			return nil, err
		}
		part := &parquetPart{path: name, column: sch.name, leaf: sch.leaf, kind: sch.kind,
			nullDef: sch.nullDef, emptyDef: sch.emptyDef, maxDef: sch.maxDef, cursors: cursors}
		cursors.keep(part, pf)
		part.groups = []int64{0}
		for _, rg := range pf.RowGroups() {
			part.groups = append(part.groups, part.groups[len(part.groups)-1]+rg.NumRows())
		}
		rows := part.groups[len(part.groups)-1]
		if rows > math.MaxInt || s.Rows > math.MaxInt-int(rows) {
			return nil, fmt.Errorf("%s: more rows in all than an int counts", name)
		}
		if s.Cols == 0 && rows > 0 {
			// The first file with rows says d: Spark leaves empty files
			// for empty partitions.
			d, err := part.firstRowLen()
			if err != nil {
				return nil, err
			}
			s.Cols = d
		}
		if err := part.checkCounts(pf, s.Cols); err != nil {
			return nil, err
		}
		s.parts = append(s.parts, sourcePart{path: name, first: s.Rows, rows: int(rows), pq: part})
		s.Rows += int(rows)
	}
	if s.Rows == 0 {
		if len(files) > 1 {
			return nil, fmt.Errorf("%s and the %d other files: no rows; want at least one vector", files[0], len(files)-1)
		}
		return nil, fmt.Errorf("%s: no rows; want at least one vector", files[0])
	}
	return s, nil
}

// openParquetFile opens the file at name and reads its footer, turning the
// reader's panics on crafted footers into errors. The caller closes f.
func openParquetFile(name string) (pf *parquet.File, f *os.File, err error) {
	f, err = os.Open(name)
	if err != nil {
		return nil, nil, pathError(name, err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s: not a regular file", name)
	}
	if err == nil {
		err = checkParquetMagic(f, name, fi.Size())
	}
	if err == nil {
		pf, err = guard(name, func() (*parquet.File, error) {
			return parquet.OpenFile(f, fi.Size(), parquet.SkipBloomFilters(true))
		})
		if err != nil {
			err = fmt.Errorf("%s: unreadable Parquet footer: %s", name, oneLine(err.Error()))
		}
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return pf, f, nil
}

// checkParquetMagic tells a file of another kind, and a Parquet file cut
// short (its footer, at the end, is gone), from a corrupt footer.
func checkParquetMagic(f *os.File, name string, size int64) error {
	var head, tail [4]byte
	if size < 12 {
		return fmt.Errorf("%s: not a Parquet file (%d bytes, too short)", name, size)
	}
	if _, err := f.ReadAt(head[:], 0); err != nil {
		return pathError(name, err)
	}
	if string(head[:]) != "PAR1" {
		return fmt.Errorf("%s: not a Parquet file (bad magic)", name)
	}
	if _, err := f.ReadAt(tail[:], size-4); err != nil {
		return pathError(name, err)
	}
	if string(tail[:]) != "PAR1" {
		return fmt.Errorf("%s: truncated Parquet file: the footer is missing", name)
	}
	return nil
}

// guard runs fn, turning a panic of the Parquet library (which trusts some
// of a file's counts) into an error.
func guard[T any](name string, fn func() (T, error)) (v T, err error) {
	defer func() {
		if e := recover(); e != nil {
			err = fmt.Errorf("corrupt Parquet data (%v)", e)
		}
	}()
	return fn()
}

// parquetLeaf is one leaf column of a file's schema: the schema elements
// from its top-level field down to it, and its index among the leaves (the
// column chunks' order).
type parquetLeaf struct {
	path  []*format.SchemaElement
	index int
}

// parquetLeaves lists the leaves of a footer's schema, whose elements are
// its tree in depth-first order, the root first.
func parquetLeaves(elems []format.SchemaElement) ([]parquetLeaf, error) {
	var out []parquetLeaf
	pos := 1
	var walk func(above []*format.SchemaElement, children int) error
	walk = func(above []*format.SchemaElement, children int) error {
		for range children {
			if pos >= len(elems) {
				return errors.New("the schema lists fewer fields than its groups hold")
			}
			e := &elems[pos]
			pos++
			path := append(slices.Clip(above), e)
			if e.Type.Valid {
				out = append(out, parquetLeaf{path: path, index: len(out)})
			} else if err := walk(path, int(e.NumChildren.V)); err != nil {
				return err
			}
		}
		return nil
	}
	if len(elems) == 0 {
		return nil, errors.New("empty schema")
	}
	if err := walk(nil, int(elems[0].NumChildren.V)); err != nil {
		return nil, err
	}
	return out, nil
}

func repetition(e *format.SchemaElement) format.FieldRepetitionType {
	if e.RepetitionType.Valid {
		return e.RepetitionType.V
	}
	return format.Required
}

// levels are the leaf's maximum repetition and definition levels, and the
// index in path of its first repeated element (-1 for none).
func (l parquetLeaf) levels() (maxRep, maxDef, repeated int) {
	repeated = -1
	for i, e := range l.path {
		switch repetition(e) {
		case format.Repeated:
			maxRep++
			maxDef++
			if repeated < 0 {
				repeated = i
			}
		case format.Optional:
			maxDef++
		}
	}
	return maxRep, maxDef, repeated
}

// name is the leaf's dotted path.
func (l parquetLeaf) name() string { return joinNames(l.path) }

func joinNames(path []*format.SchemaElement) string {
	names := make([]string, len(path))
	for i, e := range path {
		names[i] = e.Name
	}
	return strings.Join(names, ".")
}

// listName names a repeated leaf by the list it is an element of: "emb"
// for emb.list.element (the standard three levels), emb.array (two) and a
// bare repeated emb alike. r is the index of the repeated element.
func (l parquetLeaf) listName(r int) string {
	if r > 0 && isList(l.path[r-1]) {
		return joinNames(l.path[:r])
	}
	return joinNames(l.path[:r+1])
}

func isList(e *format.SchemaElement) bool {
	if _, ok := e.LogicalType.Value.(*format.ListType); ok {
		return true
	}
	return e.ConvertedType.Valid && e.ConvertedType.V == deprecated.List
}

// typeName names a leaf's values in numpy's words where it can.
func (l parquetLeaf) typeName() string {
	e := l.path[len(l.path)-1]
	switch lt := e.LogicalType.Value.(type) {
	case *format.Float16Type:
		return "float16"
	case *format.StringType:
		return "string"
	case *format.IntType:
		if lt.IsSigned {
			return fmt.Sprintf("int%d", lt.BitWidth)
		}
		return fmt.Sprintf("uint%d", lt.BitWidth)
	}
	if e.ConvertedType.Valid && e.ConvertedType.V == deprecated.UTF8 {
		return "string"
	}
	switch e.Type.V {
	case format.Boolean:
		return "bool"
	case format.Int32:
		return "int32"
	case format.Int64:
		return "int64"
	case format.Int96:
		return "int96"
	case format.Float:
		return "float32"
	case format.Double:
		return "float64"
	case format.ByteArray:
		return "binary"
	case format.FixedLenByteArray:
		return fmt.Sprintf("fixed_len_byte_array(%d)", e.TypeLength.V)
	}
	return oneLine(e.Type.V.String())
}

// unsigned reports an integer leaf annotated as unsigned.
func (l parquetLeaf) unsigned() bool {
	e := l.path[len(l.path)-1]
	if lt, ok := e.LogicalType.Value.(*format.IntType); ok {
		return !lt.IsSigned
	}
	return e.ConvertedType.Valid && (e.ConvertedType.V == deprecated.Uint32 || e.ConvertedType.V == deprecated.Uint64)
}

// floatKind is the width of a leaf's floats, if it holds floats.
func (l parquetLeaf) floatKind() (parquetFloat, bool) {
	e := l.path[len(l.path)-1]
	switch e.Type.V {
	case format.Float:
		return pqFloat32, true
	case format.Double:
		return pqFloat64, true
	case format.FixedLenByteArray:
		if _, ok := e.LogicalType.Value.(*format.Float16Type); ok && e.TypeLength.V == 2 {
			return pqFloat16, true
		}
	}
	return 0, false
}

// findVectorColumn finds the vector column named column, or the only list
// of floats when column is "".
func findVectorColumn(name string, pf *parquet.File, column string) (parquetSchema, error) {
	all, err := parquetLeaves(pf.Metadata().Schema)
	if err != nil {
		return parquetSchema{}, fmt.Errorf("%s: unreadable Parquet schema: %v", name, err)
	}
	var floats, others []string
	var found parquetLeaf
	foundR := -1
	for _, l := range all {
		maxRep, _, r := l.levels()
		if maxRep != 1 {
			if column != "" && l.name() == column {
				if maxRep == 0 {
					return parquetSchema{}, fmt.Errorf("%s: column %q holds one %s per row, not a list of floats", name, column, l.typeName())
				}
				return parquetSchema{}, fmt.Errorf("%s: column %q holds nested lists, not a list of floats", name, column)
			}
			continue
		}
		list := l.listName(r)
		// The float must be the list's element itself (emb.list.element
		// or a repeated float), not a field of a struct in the list.
		if _, ok := l.floatKind(); !ok || len(l.path) > r+2 {
			others = append(others, fmt.Sprintf("%s (%s)", list, l.typeName()))
			if list == column || l.name() == column {
				return parquetSchema{}, fmt.Errorf("%s: column %q holds lists of %s, not of float32, float16 or float64", name, column, l.typeName())
			}
			continue
		}
		floats = append(floats, list)
		if (column == "" && foundR < 0) || list == column || l.name() == column {
			found, foundR = l, r
		}
	}
	switch {
	case column != "" && foundR < 0:
		return parquetSchema{}, fmt.Errorf("%s: no column %q; lists of floats: %s", name, column, listOrNone(floats))
	case column == "" && len(floats) == 0:
		if len(others) > 0 {
			return parquetSchema{}, fmt.Errorf("%s: no list column of floats (lists: %s)", name, strings.Join(others, ", "))
		}
		return parquetSchema{}, fmt.Errorf("%s: no list column of floats to take vectors from", name)
	case column == "" && len(floats) > 1:
		return parquetSchema{}, fmt.Errorf("%s: %d list columns of floats (%s): name one with --column", name, len(floats), strings.Join(floats, ", "))
	}
	_, maxDef, r := found.levels()
	sch := parquetSchema{name: found.listName(r), leaf: found.index, maxDef: maxDef}
	sch.kind, _ = found.floatKind()
	// The definition levels down to the list group (the element above the
	// repeated one) and down to the repeated element.
	def := 0
	for i, e := range found.path[:r+1] {
		if rep := repetition(e); rep != format.Required {
			def++
		}
		if i == r-1 {
			sch.nullDef = def
		}
	}
	sch.emptyDef = def
	return sch, nil
}

func listOrNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// firstRowLen reads the first row of the file's first non-empty row group
// and returns its length, the vectors' d.
func (p *parquetPart) firstRowLen() (int, error) {
	g := 0
	for p.groups[g+1] == 0 {
		g++
	}
	c, err := p.cursor(g, 0)
	if err != nil {
		return 0, err
	}
	defer c.close()
	return c.measure()
}

// checkCounts checks each row group's count of values (levels, which
// count a null or empty list once) against rows of d values, and reads
// a row group that disagrees to name its first bad row.
func (p *parquetPart) checkCounts(pf *parquet.File, d int) error {
	for g, rg := range pf.RowGroups() {
		rows := rg.NumRows()
		chunks := rg.ColumnChunks()
		if p.leaf >= len(chunks) {
			return fmt.Errorf("%s: row group %d has %d columns, the schema more", p.path, g, len(chunks))
		}
		if have := chunks[p.leaf].NumValues(); rows > 0 && have != rows*int64(d) {
			if err := p.scan(g, d); err != nil {
				return err
			}
			return fmt.Errorf("%s: row group %d holds %d values in column %q for %d rows of d=%d", p.path, g, have, p.column, rows, d)
		}
	}
	return nil
}

// scan reads row group g's structure, checking every row's length and
// nulls but converting no value.
func (p *parquetPart) scan(g, d int) error {
	c, err := p.cursor(g, 0)
	if err != nil {
		return err
	}
	defer c.close()
	return c.advance(0, p.groups[g+1]-p.groups[g], nil, d)
}

// read converts the file's rows [i, j) into dst, a row group at a time,
// each from a cursor left where an earlier read stopped when there is one.
func (p *parquetPart) read(i, j int, dst []float32, d int) error {
	g, _ := slices.BinarySearch(p.groups, int64(i))
	if g == len(p.groups) || p.groups[g] > int64(i) {
		g--
	}
	for lo := int64(i); lo < int64(j); g++ {
		start, end := p.groups[g], p.groups[g+1]
		hi := min(int64(j), end)
		if lo >= hi {
			continue // an empty row group
		}
		c, err := p.cursors.take(p, g, lo-start)
		if err != nil {
			return err
		}
		err = c.advance(lo-start, hi-start, dst[(lo-int64(i))*int64(d):(hi-int64(i))*int64(d)], d)
		if err != nil {
			c.close()
			return err
		}
		p.cursors.put(c)
		lo = hi
	}
	return nil
}

// parquetCursor reads one row group's vector column in order, a page at a
// time. Between reads it rests at the start of row next.
type parquetCursor struct {
	part  *parquetPart
	f     *os.File
	group int
	pages parquet.Pages
	next  int64 // rows [0, next) of the group are behind the cursor
	// The page being read and the place in it: its levels (one per value
	// or null), and its values (with a dictionary, the indexes into it).
	page       parquet.Page
	reps, defs []byte
	vals       pageValues
	lvl, val   int
	// The row being read, when a page ended inside it: its row number in
	// the group and the values seen.
	open bool
	row  int64
	col  int
}

// cursor opens a cursor on row group g at row first of the group: where
// the file has a page index, at the page holding first; otherwise at the
// group's first page, then reading past the rows before first.
func (p *parquetPart) cursor(g int, first int64) (*parquetCursor, error) {
	pf, err := p.cursors.footer(p)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p.path)
	if err != nil {
		return nil, pathError(p.path, err)
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != pf.Size() {
		f.Close()
		return nil, fmt.Errorf("%s: changed while being read", p.path)
	}
	chunk, ok := pf.RowGroups()[g].ColumnChunks()[p.leaf].(*parquet.FileColumnChunk)
	if !ok {
		f.Close()
		return nil, fmt.Errorf("%s: row group %d: not a column chunk of a file", p.path, g)
	}
	// The footer was read from another descriptor, long closed: the pages
	// are read from this one.
	c := &parquetCursor{part: p, f: f, group: g, pages: chunk.PagesFrom(f)}
	if first > 0 && len(pf.OffsetIndexes()) > 0 {
		if _, err := guard(p.path, func() (struct{}, error) { return struct{}{}, c.pages.SeekToRow(first) }); err != nil {
			c.close()
			return nil, p.pageError(g, err)
		}
		c.next = first
	}
	return c, nil
}

func (c *parquetCursor) close() {
	if c.page != nil {
		parquet.Release(c.page)
		c.page = nil
	}
	c.pages.Close()
	c.f.Close()
}

// pageError describes a page the library could not read or decode.
func (p *parquetPart) pageError(g int, err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%s: row group %d: file shrank while being read, or a page runs past its end", p.path, g)
	}
	return fmt.Errorf("%s: row group %d of column %q: %s", p.path, g, p.column, oneLine(err.Error()))
}

// nextPage moves to the group's next page; io.EOF after the last.
func (c *parquetCursor) nextPage() error {
	if c.page != nil {
		parquet.Release(c.page)
		c.page = nil
	}
	p := c.part
	page, err := guard(p.path, c.pages.ReadPage)
	if err == io.EOF {
		return err
	}
	if err != nil {
		return p.pageError(c.group, err)
	}
	c.page, c.lvl, c.val = page, 0, 0
	c.reps, c.defs = page.RepetitionLevels(), page.DefinitionLevels()
	if len(c.reps) != len(c.defs) {
		return fmt.Errorf("%s: row group %d: corrupt page: %d repetition levels, %d definition levels", p.path, c.group, len(c.reps), len(c.defs))
	}
	if c.vals, err = guard(p.path, func() (pageValues, error) { return valuesOf(page, p.kind) }); err != nil {
		return fmt.Errorf("%s: row group %d: corrupt page: %v", p.path, c.group, err)
	}
	present := c.vals.n
	if c.vals.n != len(c.defs) {
		// Nulls in the page: the values must be its levels that are
		// values, or reading would run past them.
		present = 0
		for _, def := range c.defs {
			if int(def) >= p.maxDef {
				present++
			}
		}
	}
	if present != c.vals.n {
		return fmt.Errorf("%s: row group %d: corrupt page: %d values for %d levels, %d of them values", p.path, c.group, c.vals.n, len(c.defs), present)
	}
	return nil
}

// fileRow is a row of the group as the file numbers it.
func (c *parquetCursor) fileRow(r int64) int64 { return c.part.groups[c.group] + r }

// measure reads the group's first row and returns its length.
func (c *parquetCursor) measure() (int, error) {
	n, started := 0, false
	for {
		if c.page == nil || c.lvl == len(c.reps) {
			if err := c.nextPage(); err == io.EOF {
				break
			} else if err != nil {
				return 0, err
			}
			continue
		}
		if c.reps[c.lvl] == 0 {
			if started {
				break
			}
			started = true
		}
		if err := c.checkDef(0, n); err != nil {
			return 0, err
		}
		n++
		c.lvl++
	}
	if n == 0 {
		p := c.part
		return 0, fmt.Errorf("%s: row 0 of column %q has no values", p.path, p.column)
	}
	return n, nil
}

// checkDef checks that the level at the cursor is a value, not a null or
// an empty list, in row r at position col.
func (c *parquetCursor) checkDef(r int64, col int) error {
	p := c.part
	switch def := int(c.defs[c.lvl]); {
	case def >= p.maxDef:
		return nil
	case def < p.nullDef:
		return fmt.Errorf("%s: row %d of column %q is null", p.path, c.fileRow(r), p.column)
	case def < p.emptyDef:
		return fmt.Errorf("%s: row %d of column %q is an empty list", p.path, c.fileRow(r), p.column)
	default:
		return fmt.Errorf("%s: row %d, column %d is null", p.path, c.fileRow(r), col)
	}
}

// advance reads on to the start of row b of the group, checking rows
// [a, b) (their length and nulls) and converting them into dst when it is
// not nil; rows before a are only counted.
func (c *parquetCursor) advance(a, b int64, dst []float32, d int) error {
	p := c.part
	for {
		if c.page == nil || c.lvl == len(c.reps) {
			err := c.nextPage()
			if err == io.EOF {
				if c.open {
					if err := c.closeRow(a, d); err != nil {
						return err
					}
				}
				if c.next < b {
					return fmt.Errorf("%s: row group %d of column %q ends after %d of its %d rows", p.path, c.group, p.column, c.next, p.groups[c.group+1]-p.groups[c.group])
				}
				return nil
			}
			if err != nil {
				return err
			}
			continue
		}
		k := c.lvl
		if c.reps[k] == 0 {
			if c.open {
				if err := c.closeRow(a, d); err != nil {
					return err
				}
			}
			if c.next >= b {
				return nil
			}
			c.open, c.row, c.col = true, c.next, 0
			c.next++
		} else if !c.open {
			return fmt.Errorf("%s: row group %d: corrupt page: it starts inside a row", p.path, c.group)
		}
		// The row's levels in this page end at the next row's start.
		end := len(c.reps)
		if e := bytes.IndexByte(c.reps[k+1:], 0); e >= 0 {
			end = k + 1 + e
		}
		if c.row < a {
			c.skipLevels(end)
			continue
		}
		if err := c.take(end, dst, a, d); err != nil {
			return err
		}
	}
}

// skipLevels moves past the levels up to end, and the values among them.
func (c *parquetCursor) skipLevels(end int) {
	if c.vals.n == len(c.defs) { // no nulls in the page: one value per level
		c.val = end
	} else {
		for _, def := range c.defs[c.lvl:end] {
			if int(def) >= c.part.maxDef {
				c.val++
			}
		}
	}
	c.lvl = end
}

// take reads the open row's levels up to end into its row of dst.
func (c *parquetCursor) take(end int, dst []float32, a int64, d int) error {
	p := c.part
	n := end - c.lvl
	if c.vals.n != len(c.defs) {
		// Nulls in the page: find the first of this row's, if any.
		for l := c.lvl; l < end; l++ {
			if int(c.defs[l]) < p.maxDef {
				n = l - c.lvl
				break
			}
		}
	}
	if dst != nil && c.col < d {
		w := min(n, d-c.col)
		out := dst[(c.row-a)*int64(d)+int64(c.col):][:w]
		if bad, err := c.vals.convert(out, c.val); err != nil {
			return fmt.Errorf("%s: row %d, column %d: %v", p.path, c.fileRow(c.row), c.col+bad, err)
		} else if bad >= 0 {
			return fmt.Errorf("%s: row %d, column %d is %s", p.path, c.fileRow(c.row), c.col+bad, nonFinite(out[bad]))
		}
	}
	c.col += n
	c.val += n
	c.lvl += n
	if c.lvl < end {
		return c.checkDef(c.row, c.col)
	}
	return nil
}

// closeRow checks the length of the row just ended.
func (c *parquetCursor) closeRow(a int64, d int) error {
	c.open = false
	if c.row >= a && c.col != d {
		p := c.part
		return fmt.Errorf("%s: row %d of column %q has %d values, but the vectors have d=%d", p.path, c.fileRow(c.row), p.column, c.col, d)
	}
	return nil
}

// pageValues are a page's values of one float width, or indexes into its
// dictionary's.
type pageValues struct {
	n    int // values in the page (indexes, with a dictionary)
	f32  []float32
	f64  []float64
	f16  []byte
	idx  []int32 // nil without a dictionary
	kind parquetFloat
}

// valuesOf exposes the decoded values of page without copying them.
func valuesOf(page parquet.Page, kind parquetFloat) (pageValues, error) {
	v := pageValues{kind: kind}
	data := page.Data()
	if dict := page.Dictionary(); dict != nil {
		v.idx = data.Int32()
		v.n = len(v.idx)
		data = dict.Page().Data()
	}
	switch kind {
	case pqFloat32:
		v.f32 = data.Float()
		if v.idx == nil {
			v.n = len(v.f32)
		}
	case pqFloat64:
		v.f64 = data.Double()
		if v.idx == nil {
			v.n = len(v.f64)
		}
	case pqFloat16:
		b, size := data.FixedLenByteArray()
		if size != 2 && len(b) > 0 {
			return v, fmt.Errorf("float16 values of %d bytes", size)
		}
		v.f16 = b
		if v.idx == nil {
			v.n = len(b) / 2
		}
	}
	return v, nil
}

// dictLen is the number of values a dictionary index may point at.
func (v *pageValues) dictLen() int {
	switch v.kind {
	case pqFloat32:
		return len(v.f32)
	case pqFloat64:
		return len(v.f64)
	}
	return len(v.f16) / 2
}

// convert writes the values from the page's value from on into out, and
// returns the index in out of the first that is not finite, or -1; the
// error is for a float64 beyond float32's range or a bad dictionary index.
func (v *pageValues) convert(out []float32, from int) (int, error) {
	if v.idx != nil {
		n := v.dictLen()
		for i, x := range v.idx[from : from+len(out)] {
			if x < 0 || int(x) >= n {
				return i, fmt.Errorf("dictionary index %d out of range (dictionary of %d)", x, n)
			}
			switch v.kind {
			case pqFloat32:
				out[i] = v.f32[x]
			case pqFloat64:
				out[i] = float32(v.f64[x])
				if math.IsInf(float64(out[i]), 0) && !math.IsInf(v.f64[x], 0) {
					return i, fmt.Errorf("float64 value %g does not fit in float32", v.f64[x])
				}
			case pqFloat16:
				out[i] = halfToFloat32(uint16(v.f16[2*x]) | uint16(v.f16[2*x+1])<<8)
			}
		}
		return firstNonFinite(out), nil
	}
	switch v.kind {
	case pqFloat32:
		copy(out, v.f32[from:])
	case pqFloat64:
		for i, x := range v.f64[from : from+len(out)] {
			out[i] = float32(x)
			if math.IsInf(float64(out[i]), 0) && !math.IsInf(x, 0) {
				return i, fmt.Errorf("float64 value %g does not fit in float32", x)
			}
		}
	case pqFloat16:
		b := v.f16[2*from:]
		for i := range out {
			out[i] = halfToFloat32(uint16(b[2*i]) | uint16(b[2*i+1])<<8)
		}
	}
	return firstNonFinite(out), nil
}

// firstNonFinite is the index of the first NaN or infinity in x, or -1;
// it tests the exponent bits, which is what makes a float32 not finite.
func firstNonFinite(x []float32) int {
	for i, v := range x {
		if math.Float32bits(v)&0x7f800000 == 0x7f800000 {
			return i
		}
	}
	return -1
}

// parquetCursors keeps the cursors that reads left at rest, so that the
// next read of the rows that follow (a block after a block, the next run
// of a sorted sample) goes on from there instead of from the start of the
// row group. It holds at most maxIdleCursors, each with its file open;
// they are closed when the Source and its slices are collected.
type parquetCursors struct {
	idle *idleCursors
}

// idleCursors is parquetCursors' state, apart so that the cleanup that
// closes the files does not keep parquetCursors reachable. It also keeps
// the footers of the files read last, most recent last, so that a cursor
// on another row group does not parse the footer again: a footer grows
// with the row groups, and reading a file of many small ones would
// otherwise cost their number squared.
type idleCursors struct {
	mu      sync.Mutex
	list    []*parquetCursor
	footers []parsedFooter
}

type parsedFooter struct {
	part *parquetPart
	file *parquet.File
}

// maxFooters bounds the footers kept: those of the files being read, and
// in a folder of shards the next few.
const maxFooters = 8

// keep remembers pf as p's footer.
func (pc *parquetCursors) keep(p *parquetPart, pf *parquet.File) {
	idle := pc.idle
	idle.mu.Lock()
	defer idle.mu.Unlock()
	idle.footers = slices.DeleteFunc(idle.footers, func(f parsedFooter) bool { return f.part == p })
	if len(idle.footers) == maxFooters {
		idle.footers = slices.Delete(idle.footers, 0, 1)
	}
	idle.footers = append(idle.footers, parsedFooter{p, pf})
}

// footer returns p's footer, reading it again when it was dropped and
// checking that the file still has the row groups it had when opened.
func (pc *parquetCursors) footer(p *parquetPart) (*parquet.File, error) {
	idle := pc.idle
	idle.mu.Lock()
	for i := len(idle.footers) - 1; i >= 0; i-- {
		if f := idle.footers[i]; f.part == p {
			idle.mu.Unlock()
			return f.file, nil
		}
	}
	idle.mu.Unlock()
	pf, f, err := openParquetFile(p.path)
	if err != nil {
		return nil, err
	}
	f.Close()
	rgs := pf.RowGroups()
	same := len(rgs) == len(p.groups)-1
	for g := 0; same && g < len(rgs); g++ {
		same = rgs[g].NumRows() == p.groups[g+1]-p.groups[g] && p.leaf < len(rgs[g].ColumnChunks())
	}
	if !same {
		return nil, fmt.Errorf("%s: changed while being read", p.path)
	}
	pc.keep(p, pf)
	return pf, nil
}

// maxIdleCursors bounds the files a Source keeps open between reads: one
// per goroutine reading it in order, for a few goroutines.
const maxIdleCursors = 4

func newParquetCursors() *parquetCursors {
	pc := &parquetCursors{idle: &idleCursors{}}
	runtime.AddCleanup(pc, func(idle *idleCursors) {
		idle.mu.Lock()
		defer idle.mu.Unlock()
		for _, c := range idle.list {
			c.close()
		}
		idle.list = nil
	}, pc.idle)
	return pc
}

// take returns a cursor on row group g of p at row first: the idle one
// nearest before it in the same group, or a new one.
func (pc *parquetCursors) take(p *parquetPart, g int, first int64) (*parquetCursor, error) {
	idle := pc.idle
	idle.mu.Lock()
	best := -1
	for i, c := range idle.list {
		if c.part == p && c.group == g && c.next <= first && (best < 0 || c.next > idle.list[best].next) {
			best = i
		}
	}
	if best >= 0 {
		c := idle.list[best]
		idle.list = slices.Delete(idle.list, best, best+1)
		idle.mu.Unlock()
		return c, nil
	}
	idle.mu.Unlock()
	return p.cursor(g, first)
}

// put keeps c for a later read, closing the oldest idle cursor if there
// are too many.
func (pc *parquetCursors) put(c *parquetCursor) {
	idle := pc.idle
	idle.mu.Lock()
	defer idle.mu.Unlock()
	if c.next >= c.part.groups[c.group+1]-c.part.groups[c.group] {
		c.close() // at the group's end: nothing left to read on from
		return
	}
	if len(idle.list) == maxIdleCursors {
		idle.list[0].close()
		idle.list = idle.list[1:]
	}
	idle.list = append(idle.list, c)
}
