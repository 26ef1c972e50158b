package cli

import (
	"fmt"
	"strconv"
	"strings"
)

// parseBytes reads a size such as "3GiB", "500MB", "2g" or "1048576";
// "" is 0 (the default) and "none" is -1 (no bound).
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(strings.ToLower(s))
	switch s {
	case "":
		return 0, nil
	case "none":
		return -1, nil
	}
	units := []struct {
		suffix string
		mult   int64
	}{{"gib", 1 << 30}, {"mib", 1 << 20}, {"kib", 1 << 10}, {"gb", 1e9}, {"mb", 1e6}, {"kb", 1e3}, {"g", 1 << 30}, {"m", 1 << 20}, {"k", 1 << 10}, {"b", 1}}
	mult := int64(1)
	for _, u := range units {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("%q is not a size such as 3GiB or 500MB", s)
	}
	return int64(v * float64(mult)), nil
}
