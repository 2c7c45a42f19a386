package sigma

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
)

// ReadFS parses every *.yml and *.yaml file under fsys (in lexical order). Files that do not parse
// are reported as problems; the error is for a folder that cannot be walked at all.
func ReadFS(fsys fs.FS) ([]*Rule, []Problem, error) {
	var rules []*Rule
	var problems []Problem
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == "." {
				return err
			}
			problems = append(problems, Problem{Path: p, Kind: ProblemParse, Err: err})
			return nil
		}
		if d.IsDir() {
			return nil
		}
		ext := strings.ToLower(path.Ext(p))
		if ext != ".yml" && ext != ".yaml" {
			return nil
		}
		data, err := readLimited(fsys, p)
		if err != nil {
			problems = append(problems, Problem{Path: p, Kind: ProblemParse, Err: err})
			return nil
		}
		r, err := ParseRule(data)
		if err != nil {
			kind := ProblemParse
			if Reason(err) != "" {
				kind = ProblemUnsupported
			}
			pr := Problem{Path: p, Kind: kind, Err: err}
			if r != nil {
				pr.RuleID, pr.Title = r.ID, r.Title
			}
			problems = append(problems, pr)
			return nil
		}
		r.Path = p
		rules = append(rules, r)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("sigma: read rules: %w", err)
	}
	return rules, problems, nil
}

func readLimited(fsys fs.FS, p string) ([]byte, error) {
	f, err := fsys.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRuleSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxRuleSize {
		return nil, fmt.Errorf("larger than %d bytes: not a rule", maxRuleSize)
	}
	return data, nil
}

// LoadFS reads and compiles every rule under fsys. Problems list the rules left out and why.
func LoadFS(fsys fs.FS) (*RuleSet, []Problem, error) {
	rules, problems, err := ReadFS(fsys)
	if err != nil {
		return nil, nil, err
	}
	rs, more := Compile(rules)
	return rs, append(problems, more...), nil
}

// LoadDirs reads and compiles every rule under the folders. A problem's Path is the file's path
// joined to its folder. A folder that cannot be read is an error.
func LoadDirs(dirs ...string) (*RuleSet, []Problem, error) {
	rules, problems, err := ReadDirs(dirs...)
	if err != nil {
		return nil, nil, err
	}
	rs, more := Compile(rules)
	return rs, append(problems, more...), nil
}

// ReadDirs is ReadFS over folders; Rule.Path and Problem.Path are joined to the folder.
func ReadDirs(dirs ...string) ([]*Rule, []Problem, error) {
	var rules []*Rule
	var problems []Problem
	for _, dir := range dirs {
		fi, err := os.Stat(dir)
		if err != nil {
			return nil, nil, fmt.Errorf("sigma: rules folder: %w", err)
		}
		if !fi.IsDir() {
			return nil, nil, fmt.Errorf("sigma: rules folder %s is not a folder", dir)
		}
		rs, ps, err := ReadFS(os.DirFS(dir))
		if err != nil {
			return nil, nil, fmt.Errorf("%w (folder %s)", err, dir)
		}
		for _, r := range rs {
			r.Path = joinPath(dir, r.Path)
		}
		for i := range ps {
			ps[i].Path = joinPath(dir, ps[i].Path)
		}
		rules = append(rules, rs...)
		problems = append(problems, ps...)
	}
	return rules, problems, nil
}

func joinPath(dir, p string) string {
	return strings.TrimSuffix(dir, string(os.PathSeparator)) + string(os.PathSeparator) + p
}
