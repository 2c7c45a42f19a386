package defender

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
)

// LibraryFile is an entry of the tenant's Live Response library (mde-api.md §6).
type LibraryFile struct {
	FileName        string `json:"fileName"`
	SHA256          string `json:"sha256"`
	Description     string `json:"description"`
	CreationTime    Time   `json:"creationTime"`
	LastUpdatedTime Time   `json:"lastUpdatedTime"`
	CreatedBy       string `json:"createdBy"`
	HasParameters   bool   `json:"hasParameters"`
	// ParametersDescription may be absent when HasParameters is false.
	ParametersDescription string `json:"parametersDescription,omitempty"`
}

// LibraryUpload is a file to put in the library. Content is held in memory: the API takes at most 20 MB.
type LibraryUpload struct {
	FileName              string
	Content               []byte
	Description           string
	ParametersDescription string
	// HasParameters must be set for a script's Args to reach it.
	HasParameters bool
	// OverrideIfExists replaces an entry of the same name. It also makes the upload safe to retry.
	OverrideIfExists bool
}

// MaxLibraryFileSize is the API's upload limit.
const MaxLibraryFileSize = 20 << 20

// libraryNameRE is the portal's rule for library file names, which the API is assumed to share.
var libraryNameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,255}$`)

// Validate checks the name and size rules before anything is sent.
func (u LibraryUpload) Validate() error {
	if !libraryNameRE.MatchString(u.FileName) || u.FileName == "." || u.FileName == ".." {
		return fmt.Errorf("file name %q: use letters, digits, '-', '_' and '.' only", u.FileName)
	}
	if len(u.Content) == 0 {
		return errors.New("empty file")
	}
	if len(u.Content) > MaxLibraryFileSize {
		return fmt.Errorf("file is %d bytes; the API takes at most %d", len(u.Content), MaxLibraryFileSize)
	}
	return nil
}

// ListLibrary returns every file in the Live Response library.
func (c *Client) ListLibrary(ctx context.Context) ([]LibraryFile, error) {
	var col collection[LibraryFile]
	r := request{fam: famLibrary, method: http.MethodGet, path: "/api/libraryfiles"}
	if err := c.call(ctx, r, &col); err != nil {
		return nil, err
	}
	return col.Value, nil
}

// UploadLibraryFile uploads a file (multipart/form-data) and returns the library entry.
func (c *Client) UploadLibraryFile(ctx context.Context, u LibraryUpload) (*LibraryFile, error) {
	if err := u.Validate(); err != nil {
		return nil, fmt.Errorf("defender: upload library file: %w", err)
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, err := mw.CreateFormFile("file", u.FileName)
	if err != nil {
		return nil, err
	}
	if _, err := fw.Write(u.Content); err != nil {
		return nil, err
	}
	fields := [][2]string{
		{"Description", u.Description},
		{"ParametersDescription", u.ParametersDescription},
		{"HasParameters", strconv.FormatBool(u.HasParameters)},
		{"OverrideIfExists", strconv.FormatBool(u.OverrideIfExists)},
	}
	for _, f := range fields {
		if f[1] == "" {
			continue
		}
		if err := mw.WriteField(f[0], f[1]); err != nil {
			return nil, err
		}
	}
	if err := mw.Close(); err != nil {
		return nil, err
	}
	r := request{fam: famLibrary, method: http.MethodPost, path: "/api/libraryfiles", body: buf.Bytes(),
		contentType: mw.FormDataContentType(), retry: retryNever}
	if u.OverrideIfExists {
		// Replacing with the same bytes twice leaves the same library.
		r.retry = retrySafe
	}
	var f LibraryFile
	if err := c.call(ctx, r, &f); err != nil {
		return nil, err
	}
	return &f, nil
}

// DeleteLibraryFile removes a file from the library. A missing name gives ErrNotFound.
func (c *Client) DeleteLibraryFile(ctx context.Context, fileName string) error {
	if fileName == "" {
		return errors.New("defender: delete library file: empty name")
	}
	r := request{fam: famLibrary, method: http.MethodDelete, path: "/api/libraryfiles/" + url.PathEscape(fileName)}
	return c.call(ctx, r, nil)
}
