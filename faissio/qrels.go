package faissio

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ReadQrels reads relevance labels: one "query_index<TAB>doc_id" pair per
// line (spaces also separate; blank lines and lines starting with # are
// skipped; a third column, such as a TREC-style grade, is ignored). It
// returns the labelled document ids of each of the nQueries queries.
func ReadQrels(path string, nQueries int) ([][]int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := make([][]int64, nQueries)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || text[0] == '#' {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) < 2 {
			return nil, fmt.Errorf("%s: line %d: want query_index<TAB>doc_id, got %q", path, line, clip(text))
		}
		q, err := strconv.Atoi(fields[0])
		if err != nil || q < 0 || q >= nQueries {
			return nil, fmt.Errorf("%s: line %d: query index %q is not in 0..%d", path, line, clip(fields[0]), nQueries-1)
		}
		id, err := strconv.ParseInt(fields[1], 10, 64)
		if err != nil || id < 0 {
			return nil, fmt.Errorf("%s: line %d: document id %q is not a non-negative integer", path, line, clip(fields[1]))
		}
		out[q] = append(out[q], id)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: line %d: %v", path, line+1, err)
	}
	return out, nil
}

// clip shortens s for an error message.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
