package faissio

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
)

// ReadIDColumn reads the documents' ids from the Parquet column named
// column, one int64 (or int32, uint32, or uint64 that fits) per row of s,
// in the rows' order, and checks them as ReadIDs checks ids: none null,
// none negative, no two alike. Errors name the file and its row.
func (s *Source) ReadIDColumn(column string) ([]int64, error) {
	if s.err != nil {
		return nil, s.err
	}
	if len(s.parts) == 0 || s.parts[0].pq == nil {
		what := "vectors in memory"
		if len(s.parts) > 0 {
			what = s.parts[0].path
		}
		return nil, fmt.Errorf("%s: ids from a column need Parquet documents", what)
	}
	ids := make([]int64, 0, s.Rows)
	for _, sp := range s.parts {
		var err error
		if ids, err = sp.pq.readIDs(column, sp.skip, sp.skip+sp.rows, ids); err != nil {
			return nil, err
		}
	}
	for i, id := range ids {
		if id < 0 {
			path, row := s.rowOf(i)
			return nil, fmt.Errorf("%s: id %d at row %d of column %q is negative", path, id, row, column)
		}
	}
	if i, j, ok := firstRepeat(ids); ok {
		pi, ri := s.rowOf(i)
		pj, rj := s.rowOf(j)
		if pi == pj {
			return nil, fmt.Errorf("%s: duplicate id %d at rows %d and %d of column %q", pi, ids[i], ri, rj, column)
		}
		return nil, fmt.Errorf("duplicate id %d in column %q: %s row %d and %s row %d", ids[i], column, pi, ri, pj, rj)
	}
	return ids, nil
}

// rowOf is the file and row there of row i of s.
func (s *Source) rowOf(i int) (string, int) {
	for _, p := range s.parts {
		if i >= p.first && i < p.first+p.rows {
			return p.path, i - p.first + p.skip
		}
	}
	return "", i
}

// firstRepeat finds the first id that repeats an earlier one and both its
// positions, sorting a copy (the valid case costs 8 bytes per id).
func firstRepeat(ids []int64) (i, j int, ok bool) {
	sorted := slices.Clone(ids)
	slices.Sort(sorted)
	repeated := map[int64]int{}
	for k := 1; k < len(sorted); k++ {
		if sorted[k] == sorted[k-1] {
			repeated[sorted[k]] = -1
		}
	}
	for k, id := range ids {
		if first, seen := repeated[id]; seen {
			if first >= 0 {
				return first, k, true
			}
			repeated[id] = k
		}
	}
	return 0, 0, false
}

// readIDs appends the ids of the file's rows [i, j) to ids, a page at a
// time.
func (p *parquetPart) readIDs(column string, i, j int, ids []int64) ([]int64, error) {
	pf, f, err := openParquetFile(p.path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	all, err := parquetLeaves(pf.Metadata().Schema)
	if err != nil {
		return nil, fmt.Errorf("%s: unreadable Parquet schema: %v", p.path, err)
	}
	at := slices.IndexFunc(all, func(l parquetLeaf) bool {
		_, _, r := l.levels()
		return l.name() == column || r >= 0 && l.listName(r) == column
	})
	if at < 0 {
		return nil, fmt.Errorf("%s: no column %q for the ids", p.path, column)
	}
	leaf := all[at]
	maxRep, maxDef, _ := leaf.levels()
	if maxRep > 0 {
		return nil, fmt.Errorf("%s: column %q holds lists of %s; ids are one int64 per row", p.path, column, leaf.typeName())
	}
	kind := leaf.path[len(leaf.path)-1].Type.V
	unsigned := leaf.unsigned()
	if kind != format.Int64 && kind != format.Int32 {
		return nil, fmt.Errorf("%s: column %q holds %s values; ids are int64", p.path, column, leaf.typeName())
	}
	var buf []int64
	for g, rg := range pf.RowGroups() {
		start, end := p.groups[g], p.groups[g+1]
		if end <= int64(i) || start >= int64(j) {
			continue
		}
		pages := rg.ColumnChunks()[leaf.index].Pages()
		row := start
		for row < min(end, int64(j)) {
			page, err := guard(p.path, pages.ReadPage)
			if err == io.EOF {
				pages.Close()
				return nil, fmt.Errorf("%s: row group %d of column %q ends after %d of its %d rows", p.path, g, column, row-start, end-start)
			}
			if err != nil {
				pages.Close()
				return nil, fmt.Errorf("%s: row group %d of column %q: %s", p.path, g, column, oneLine(err.Error()))
			}
			defs := page.DefinitionLevels()
			n := int(page.NumValues())
			vals, err := guard(p.path, func() ([]int64, error) { return pageIDs(page, kind, unsigned, buf) })
			buf = vals
			if err == nil && (len(vals) != n || maxDef > 0 && len(defs) != n) {
				err = fmt.Errorf("corrupt page: %d values, %d levels, %d rows", len(vals), len(defs), n)
				for k, def := range defs {
					if int(def) < maxDef {
						err = fmt.Errorf("%s: row %d of column %q is null", p.path, row+int64(k), column)
						break
					}
				}
			}
			parquet.Release(page)
			var big unsignedError
			switch {
			case errors.As(err, &big):
				err = fmt.Errorf("%s: id %d at row %d of column %q does not fit in int64", p.path, big.v, row+int64(big.at), column)
			case err != nil && !strings.HasPrefix(err.Error(), p.path):
				err = fmt.Errorf("%s: row group %d of column %q: %v", p.path, g, column, err)
			}
			if err != nil {
				pages.Close()
				return nil, err
			}
			if lo, hi := max(int64(i), row)-row, min(int64(j), row+int64(n))-row; lo < hi {
				ids = append(ids, vals[lo:hi]...)
			}
			row += int64(n)
		}
		pages.Close()
	}
	return ids, nil
}

// unsignedError is an unsigned 64-bit id beyond int64, at index at of its
// page.
type unsignedError struct {
	v  uint64
	at int
}

func (e unsignedError) Error() string { return fmt.Sprintf("id %d does not fit in int64", e.v) }

// pageIDs converts the values of an int64 or int32 page (looked up in its
// dictionary if it has one) to int64 ids, into buf's memory.
func pageIDs(page parquet.Page, kind format.Type, unsigned bool, buf []int64) ([]int64, error) {
	data := page.Data()
	var idx []int32
	if dict := page.Dictionary(); dict != nil {
		idx = data.Int32()
		data = dict.Page().Data()
	}
	var i64 []int64
	var i32 []int32
	n := 0
	if kind == format.Int64 {
		i64 = data.Int64()
		n = len(i64)
	} else {
		i32 = data.Int32()
		n = len(i32)
	}
	count := n
	if idx != nil {
		count = len(idx)
	}
	out := buf[:0]
	for k := range count {
		at := k
		if idx != nil {
			if at = int(idx[k]); at < 0 || at >= n {
				return nil, fmt.Errorf("corrupt page: dictionary index %d out of range (dictionary of %d)", at, n)
			}
		}
		switch {
		case i64 != nil && unsigned && i64[at] < 0:
			return nil, unsignedError{uint64(i64[at]), k}
		case i64 != nil:
			out = append(out, i64[at])
		case unsigned:
			out = append(out, int64(uint32(i32[at])))
		default:
			out = append(out, int64(i32[at]))
		}
	}
	return out, nil
}
