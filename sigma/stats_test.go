package sigma

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// corpusDir is the shared corpus: SigmaHQ's rules and regression data, read at run time.
func corpusDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join("..", "..", "shared", "corpus", "sigma")
	if _, err := os.Stat(dir); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("corpus missing: %v", err)
		}
		t.Skipf("corpus missing: %v", err)
	}
	return dir
}

// TestLoadStatistics loads every Windows and Linux rule of the corpus and requires that at least
// 98% load (issue #9); it prints what did not and why.
func TestLoadStatistics(t *testing.T) {
	dir := corpusDir(t)
	rs, problems, err := LoadDirs(filepath.Join(dir, "rules", "windows"), filepath.Join(dir, "rules", "linux"))
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[ProblemKind]int{}
	reasons := map[string]int{}
	for _, p := range problems {
		kinds[p.Kind]++
		r := p.Reason()
		if p.Kind == ProblemUnmapped {
			r = p.Err.Error()
		}
		reasons[string(p.Kind)+": "+r]++
		if p.Kind == ProblemParse {
			t.Logf("parse error: %v", p)
		}
	}
	total := rs.Len() + len(problems)
	t.Logf("rules: %d, loaded %d (%.2f%%), unsupported %d, logsource not mapped %d, parse errors %d",
		total, rs.Len(), 100*float64(rs.Len())/float64(total), kinds[ProblemUnsupported], kinds[ProblemUnmapped], kinds[ProblemParse])
	type rc struct {
		r string
		n int
	}
	var list []rc
	for r, n := range reasons {
		list = append(list, rc{r, n})
	}
	slices.SortFunc(list, func(a, b rc) int { return cmp.Or(b.n-a.n, strings.Compare(a.r, b.r)) })
	for _, x := range list {
		t.Logf("%5d  %s", x.n, x.r)
	}
	if kinds[ProblemParse] > 0 {
		t.Errorf("%d rules of the corpus do not parse: each is valid Sigma, so each is a defect here", kinds[ProblemParse])
	}
	if got := float64(rs.Len()) / float64(total); got < 0.98 {
		t.Errorf("loaded %s of the rules, want at least 98%%", fmt.Sprintf("%.2f%%", 100*got))
	}
}
