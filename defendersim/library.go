package defendersim

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// LibraryFile is a Live Response library entry (§6).
type LibraryFile struct {
	FileName              string  `json:"fileName"`
	SHA256                string  `json:"sha256"`
	Description           *string `json:"description"`
	CreationTime          string  `json:"creationTime"`
	LastUpdatedTime       string  `json:"lastUpdatedTime"`
	CreatedBy             string  `json:"createdBy"`
	HasParameters         bool    `json:"hasParameters"`
	ParametersDescription *string `json:"parametersDescription"`
}

type libraryFile struct {
	entry LibraryFile
	data  []byte
}

// libraryNameRE is the portal's file-name rule, which the emulator applies to the API too (§6).
var libraryNameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,255}$`)

// libraryKey makes library names case-insensitive, as names on the Windows-hosted service are.
func libraryKey(name string) string { return strings.ToLower(name) }

func (s *Sim) lookupLibrary(name string) (libraryFile, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.library[libraryKey(name)]
	if !ok {
		return libraryFile{}, false
	}
	return *f, true
}

// LibraryContent returns the content of a file in the tenant's Live Response library, as a
// test would see it on the portal: the service itself offers no download.
func (s *Sim) LibraryContent(name string) ([]byte, bool) {
	f, ok := s.lookupLibrary(name)
	return f.data, ok
}

func (s *Sim) listLibrary(c *call) error {
	s.mu.Lock()
	items := make([]LibraryFile, 0, len(s.library))
	for _, f := range s.library {
		items = append(items, f.entry)
	}
	s.mu.Unlock()
	slices.SortFunc(items, func(a, b LibraryFile) int { return strings.Compare(a.FileName, b.FileName) })
	writeJSON(c.w, 200, collection(c, "LibraryFiles", items, ""))
	return nil
}

func parseFormBool(field, v string) (bool, error) {
	b, err := strconv.ParseBool(strings.TrimSpace(v))
	if err != nil {
		return false, badRequest("InvalidRequestBody", "'%s' must be true or false, not '%s'", field, v)
	}
	return b, nil
}

// uploadLibrary takes the multipart form of §6: `file` (or `File`), Description,
// ParametersDescription, HasParameters and OverrideIfExists; field names are case-sensitive.
func (s *Sim) uploadLibrary(c *call) error {
	mt, params, err := mime.ParseMediaType(c.r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return badRequest("InvalidRequestBody", "Library upload must be multipart/form-data")
	}
	limit := s.limits.MaxLibraryFileBytes
	c.r.Body = http.MaxBytesReader(c.w, c.r.Body, limit+1<<20)
	mr := multipart.NewReader(c.r.Body, params["boundary"])
	var (
		name, desc, paramsDesc string
		hasDesc, hasParamsDesc bool
		data                   []byte
		gotFile, hasParams     bool
		override               bool
	)
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return badRequest("BadRequest", "The file exceeds the %d MB limit of library uploads", limit>>20)
			}
			return badRequest("InvalidRequestBody", "Malformed multipart body")
		}
		field := part.FormName()
		if field == "file" || field == "File" {
			name = path.Base(strings.ReplaceAll(part.FileName(), `\`, "/"))
			data, err = io.ReadAll(io.LimitReader(part, limit+1))
			if err != nil {
				return badRequest("InvalidRequestBody", "Malformed multipart body")
			}
			if int64(len(data)) > limit {
				return badRequest("BadRequest", "The file exceeds the %d MB limit of library uploads", limit>>20)
			}
			gotFile = true
			continue
		}
		vb, err := io.ReadAll(io.LimitReader(part, 64<<10))
		if err != nil {
			return badRequest("InvalidRequestBody", "Malformed multipart body")
		}
		v := string(vb)
		switch field {
		case "Description":
			desc, hasDesc = v, true
		case "ParametersDescription":
			paramsDesc, hasParamsDesc = v, true
		case "HasParameters":
			if hasParams, err = parseFormBool(field, v); err != nil {
				return err
			}
		case "OverrideIfExists":
			if override, err = parseFormBool(field, v); err != nil {
				return err
			}
		default:
			return badRequest("InvalidRequestBody", "Unknown form field '%s'; expected file, Description, ParametersDescription, HasParameters or OverrideIfExists (names are case-sensitive)", field)
		}
	}
	if !gotFile {
		return badRequest("MissingRequiredParameter", "Missing required form field 'file'")
	}
	if !libraryNameRE.MatchString(name) || name == "." || name == ".." {
		return badRequest("InvalidInput", "Invalid file name '%s': use letters, digits, '-', '_' and '.' only", name)
	}
	sum := sha256.Sum256(data)
	now := c.now
	s.mu.Lock()
	defer s.mu.Unlock()
	old, exists := s.library[libraryKey(name)]
	if exists && !override {
		return badRequest("BadRequest", "A file named '%s' already exists in the library; set OverrideIfExists to true to replace it", old.entry.FileName)
	}
	entry := LibraryFile{
		FileName: name, SHA256: hex.EncodeToString(sum[:]), CreationTime: mdeTime(now), LastUpdatedTime: mdeTime(now),
		CreatedBy: c.requestor(), HasParameters: hasParams,
	}
	if exists {
		entry.CreationTime = old.entry.CreationTime
	}
	if hasDesc {
		entry.Description = &desc
	}
	if hasParamsDesc {
		entry.ParametersDescription = &paramsDesc
	}
	s.library[libraryKey(name)] = &libraryFile{entry: entry, data: data}
	writeJSON(c.w, 200, entity(c, "LibraryFiles/$entity", entry))
	return nil
}

func (s *Sim) deleteLibrary(c *call) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := libraryKey(c.vars[0])
	if _, ok := s.library[key]; !ok {
		return notFound("Library file %s was not found", c.vars[0])
	}
	delete(s.library, key)
	c.w.Header().Set("OData-Version", odataVersion)
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}
