package processing

import (
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"gocloud.dev/gcerrors"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/collector"
	"github.com/quarry-dfir/quarry/fsaccess/archive"
	"github.com/quarry-dfir/quarry/parse"
)

// Names of the events that come from the package itself rather than a parser: their source, and
// their entry in the report's parsers.
const (
	SourceFile    = "file"    // file-system times (MACB) of each collected file, and of each listed one
	ReportListing = "listing" // report entry of the listed files' events (source "file")
)

// maxListingLine bounds one line of a listing.
const maxListingLine = 1 << 20

// maxLiveDoc bounds a live-state document held in memory to check its hash before parsing.
const maxLiveDoc = 256 << 20

// packageError is something wrong with the evidence itself: processing it again will not help, so
// it fails the evidence (with Message for the analyst) rather than the job.
type packageError struct{ msg string }

func (e *packageError) Error() string { return e.msg }

func unusable(format string, args ...any) error { return &packageError{fmt.Sprintf(format, args...)} }

// storeError is a failure to write events or the report: the job is retried.
type storeError struct{ err error }

func (e *storeError) Error() string { return e.err.Error() }
func (e *storeError) Unwrap() error { return e.err }

// Process runs the processing of evidence id in the caller's goroutine; it is what the job does.
// Evidence already processed or failed is left alone (a duplicate job); evidence found in
// "processing" belonged to a run that died, and starts again from nothing. The error is for what
// a retry may fix (database, evidence store, ctx); what is wrong with the package is in the report.
func (p *Processor) Process(ctx context.Context, id int64) error {
	return p.lock(ctx, id, func() error { return p.process(ctx, id) })
}

func (p *Processor) process(ctx context.Context, id int64) error {
	e, err := p.cfg.Evidence.FindEvidenceByID(ctx, id)
	if err != nil {
		return fmt.Errorf("processing: evidence %d: %w", id, err)
	}
	if e.State == quarry.EvidenceProcessed || e.State == quarry.EvidenceFailed {
		return nil
	}
	a, err := p.cfg.Acquisitions.FindAcquisitionByID(ctx, e.AcquisitionID)
	if err != nil {
		return fmt.Errorf("processing: evidence %d: acquisition: %w", id, err)
	}
	if !stored(a) {
		// Queued too early (by hand): the intake queues it again once the package is stored.
		p.cfg.Logger.Info("processing: evidence not stored yet; left for the intake to queue", "evidence", id, "acquisition_state", a.State)
		return nil
	}
	// A run always starts from nothing, so a run that died half-way leaves no duplicates.
	if _, err := p.cfg.Events.DeleteEvidenceEvents(ctx, id); err != nil {
		return fmt.Errorf("processing: evidence %d: delete earlier events: %w", id, err)
	}
	// Received, or completed or failed before a reprocess: processing again.
	if a.State != quarry.AcquisitionProcessing {
		if a, err = p.cfg.Acquisitions.TransitionAcquisition(ctx, a.ID, quarry.AcquisitionTransition{State: quarry.AcquisitionProcessing}); err != nil {
			return fmt.Errorf("processing: evidence %d: %w", id, err)
		}
	}
	r := &run{p: p, e: e, a: a, host: a.HostName, report: &quarry.ProcessingReport{
		Stage: quarry.StageOpening, StartedAt: p.cfg.Now().UTC(), Parsers: map[string]*quarry.ParserReport{},
	}}
	if e.Hostname != "" {
		r.host = e.Hostname
	}
	if p.cfg.Detectors != nil {
		if r.detectors, err = p.cfg.Detectors(ctx, e.ProjectID); err != nil {
			return fmt.Errorf("processing: evidence %d: detection rules: %w", id, err)
		}
	}
	defer r.close()
	if err := r.update(ctx, quarry.EvidenceProcessing); err != nil {
		return err
	}
	err = r.run(ctx)
	var bad *packageError
	if errors.As(err, &bad) {
		return r.fail(ctx, bad.msg)
	}
	if err != nil {
		p.cfg.Logger.Warn("processing: run failed; River retries it", "evidence", id, "err", err)
		return err
	}
	return r.finish(ctx)
}

// run is one processing of one evidence item.
type run struct {
	p      *Processor
	e      *quarry.Evidence
	a      *quarry.Acquisition
	report *quarry.ProcessingReport
	host   string

	detectors  []Detector
	batch      []*quarry.Event
	lastUpdate time.Time
	ctx        context.Context
	closers    []func()
}

func (r *run) close() {
	for _, c := range r.closers {
		c()
	}
}

func (r *run) now() time.Time { return r.p.cfg.Now().UTC() }

func (r *run) update(ctx context.Context, state string) error {
	r.lastUpdate = r.now()
	if err := r.p.cfg.Evidence.UpdateEvidenceProcessing(ctx, r.e.ID, state, r.report); err != nil {
		return &storeError{fmt.Errorf("processing: evidence %d: update report: %w", r.e.ID, err)}
	}
	return nil
}

// progress writes the report at most every ProgressEvery.
func (r *run) progress(ctx context.Context) error {
	if r.now().Sub(r.lastUpdate) < r.p.cfg.ProgressEvery {
		return nil
	}
	return r.update(ctx, quarry.EvidenceProcessing)
}

func (r *run) problem(path, parser, reason string) {
	r.report.ProblemsTotal++
	if len(r.report.Problems) < r.p.cfg.MaxProblems {
		r.report.Problems = append(r.report.Problems, quarry.ProcessingProblem{Path: path, Parser: parser, Reason: reason})
	}
}

func (r *run) parser(name string) *quarry.ParserReport {
	pr := r.report.Parsers[name]
	if pr == nil {
		pr = &quarry.ParserReport{}
		r.report.Parsers[name] = pr
	}
	return pr
}

func (r *run) fail(ctx context.Context, msg string) error {
	end := r.now()
	r.report.EndedAt = &end
	r.report.Error = msg
	if err := r.update(ctx, quarry.EvidenceFailed); err != nil {
		return err
	}
	r.p.failAcquisition(ctx, r.a.ID, msg)
	return nil
}

func (p *Processor) failAcquisition(ctx context.Context, id int64, msg string) {
	a, err := p.cfg.Acquisitions.FindAcquisitionByID(ctx, id)
	if err != nil || !quarry.CanTransitionAcquisition(a.State, quarry.AcquisitionFailed) {
		return
	}
	if _, err := p.cfg.Acquisitions.TransitionAcquisition(ctx, id, quarry.AcquisitionTransition{State: quarry.AcquisitionFailed, Error: msg}); err != nil {
		p.cfg.Logger.Error("processing: fail acquisition", "acquisition", id, "err", err)
	}
}

func (r *run) finish(ctx context.Context) error {
	if err := r.flush(ctx); err != nil {
		return err
	}
	end := r.now()
	r.report.Stage, r.report.EndedAt = quarry.StageDone, &end
	if err := r.update(ctx, quarry.EvidenceProcessed); err != nil {
		return err
	}
	if r.a.State == quarry.AcquisitionProcessing {
		if _, err := r.p.cfg.Acquisitions.TransitionAcquisition(ctx, r.a.ID, quarry.AcquisitionTransition{State: quarry.AcquisitionCompleted}); err != nil {
			return fmt.Errorf("processing: evidence %d: complete acquisition: %w", r.e.ID, err)
		}
	}
	return nil
}

// item is one file to process, from a quarry package or a foreign archive.
type item struct {
	path     string // inside the package: Event.Path
	hostPath string
	target   string
	size     int64
	sha256   string // the manifest's: verified before parsing (Verify for files, while reading for live documents)
	live     bool
	listing  bool         // a names-and-metadata listing (JSON lines) of a list-only target
	times    [4]time.Time // M, A, C, B
	open     func() (io.ReadCloser, error)
}

// input is what every parse.Input of the run shares.
type input struct {
	collected, liveCollected time.Time
	tz                       *time.Location
}

func (r *run) run(ctx context.Context) error {
	r.ctx = ctx
	ra, err := newBlobReaderAt(ctx, r.p.cfg.Bucket, r.e.BlobKey)
	if gcerrors.Code(err) == gcerrors.NotFound {
		return unusable("The stored package %s is missing from the evidence store.", r.e.BlobKey)
	} else if err != nil {
		return fmt.Errorf("processing: evidence %d: open blob: %w", r.e.ID, err)
	}
	head := make([]byte, 512)
	n, err := ra.ReadAt(head, 0)
	if err != nil && err != io.EOF {
		return fmt.Errorf("processing: evidence %d: read blob: %w", r.e.ID, err)
	}
	var items []item
	var in input
	switch archive.Sniff(head[:n]) {
	case archive.FormatZip:
		if hasManifest(ra, ra.size) {
			items, in, err = r.openPackage(ctx, ra)
		} else {
			items, in, err = r.openArchive(ctx, ra)
		}
	case archive.FormatTarGz, archive.FormatTar:
		items, in, err = r.openArchive(ctx, ra)
	default:
		return unusable("The evidence is neither a quarry package nor a zip or tar archive (%d bytes).", ra.size)
	}
	if err != nil {
		return err
	}
	r.report.Stage, r.report.FilesTotal = quarry.StageParsing, len(items)
	if err := r.update(ctx, quarry.EvidenceProcessing); err != nil {
		return err
	}
	for _, it := range items {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := r.item(ctx, it, in); err != nil {
			return err
		}
		r.report.FilesDone++
		if err := r.progress(ctx); err != nil {
			return err
		}
	}
	return nil
}

// hasManifest tells a quarry package from another zip: it has a manifest.json at its top.
func hasManifest(ra io.ReaderAt, size int64) bool {
	zr, err := zip.NewReader(ra, size)
	if err != nil && zr == nil {
		return false
	}
	for _, f := range zr.File {
		if f.Name == "manifest.json" {
			return true
		}
	}
	return false
}

func (r *run) openPackage(ctx context.Context, ra *blobReaderAt) ([]item, input, error) {
	r.report.Format = collector.Format
	pkg, err := collector.OpenPackage(ra, ra.size)
	if err != nil {
		return nil, input{}, unusable("The package cannot be read: %v.", strings.TrimPrefix(err.Error(), "collector: "))
	}
	m := pkg.Manifest
	if h := strings.TrimSpace(m.Host.Hostname); h != "" {
		r.host = h
	}
	r.report.Stage = quarry.StageVerifying
	if err := r.update(ctx, quarry.EvidenceProcessing); err != nil {
		return nil, input{}, err
	}
	pkg.Verify(ctx)
	if err := ctx.Err(); err != nil {
		return nil, input{}, err
	}
	for _, pr := range pkg.Problems {
		reason := pr.Reason
		if pr.Detail != "" {
			reason += ": " + pr.Detail
		}
		r.problem(pr.Path, "", reason)
	}
	in := input{collected: m.EndedAt, liveCollected: m.StartedAt, tz: hostZone(m.Host)}
	var items []item
	for i := range m.Files {
		fe := m.Files[i]
		if _, err := pkg.Lstat(fe.Path); err != nil {
			continue // failed a check: reported above
		}
		items = append(items, item{
			path: fe.ArchivePath, hostPath: fe.Path, target: fe.Target, size: fe.Size, sha256: fe.SHA256,
			times: [4]time.Time{parseTime(fe.MTime), parseTime(fe.ATime), parseTime(fe.CTime), parseTime(fe.BTime)},
			open:  func() (io.ReadCloser, error) { return pkg.Open(fe.Path) },
		})
	}
	for _, le := range m.LiveState {
		if le.ArchivePath == "" {
			continue
		}
		name := le.ArchivePath
		items = append(items, item{path: name, live: true, sha256: le.SHA256,
			open: func() (io.ReadCloser, error) { return pkg.OpenEntry(name) }})
	}
	for _, le := range m.Listings {
		name := le.ArchivePath
		items = append(items, item{path: name, listing: true, target: le.Target, sha256: le.SHA256,
			open: func() (io.ReadCloser, error) { return pkg.OpenEntry(name) }})
	}
	sort.SliceStable(items, func(i, j int) bool { return items[i].path < items[j].path })
	// A manifest that lists one file twice must not have it parsed twice.
	items = slices.CompactFunc(items, func(a, b item) bool { return a.path == b.path })
	return items, in, nil
}

func (r *run) openArchive(ctx context.Context, ra *blobReaderAt) ([]item, input, error) {
	a, err := archive.Open(ra, ra.size, r.p.cfg.Archive)
	if err != nil {
		return nil, input{}, unusable("The archive cannot be read: %v.", strings.TrimPrefix(err.Error(), "archive: "))
	}
	// The expanded copies of a tar live until the run ends.
	r.closers = append(r.closers, func() { a.Close() })
	r.report.Format = a.Layout.Name
	for _, pr := range a.Problems {
		reason := pr.Reason
		if pr.Detail != "" {
			reason += ": " + pr.Detail
		}
		r.problem(pr.Path, "", reason)
	}
	in := input{collected: r.e.ReceivedAt, liveCollected: r.e.ReceivedAt}
	var items []item
	for _, e := range a.Entries() {
		if e.HostPath == "" {
			continue // beside the host's files: tool output, not the host's own
		}
		name := e.Name
		items = append(items, item{path: e.Name, hostPath: e.HostPath, size: e.Size,
			times: [4]time.Time{e.ModTime, e.AccessTime, e.ChangeTime, {}},
			open:  func() (io.ReadCloser, error) { return a.OpenEntry(name) }})
	}
	return items, in, nil
}

func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Unix() <= 0 {
		return time.Time{}
	}
	return t.UTC()
}

// hostZone is the host's time zone for logs written in local time: its IANA name when this server
// knows it, else its UTC offset at collection, else nil (UTC).
func hostZone(h collector.HostInfo) *time.Location {
	if tz := strings.TrimSpace(h.Timezone); tz != "" && tz != "Local" && !strings.EqualFold(tz, "UTC") {
		if loc, err := time.LoadLocation(tz); err == nil {
			return loc
		}
	}
	if off := h.UTCOffsetSeconds; off != 0 && off > -16*3600 && off < 16*3600 {
		sign, a := "+", off
		if off < 0 {
			sign, a = "-", -off
		}
		return time.FixedZone(fmt.Sprintf("UTC%s%02d:%02d", sign, a/3600, a%3600/60), off)
	}
	return nil
}

// item processes one file: its file-system times, then its content through the parser its route
// or sniffing picks.
func (r *run) item(ctx context.Context, it item, in input) error {
	if it.listing {
		return r.listing(ctx, it)
	}
	if !it.live {
		if err := r.fileEvents(it); err != nil {
			return err
		}
	}
	hostPath := it.hostPath
	gz := strings.HasSuffix(strings.ToLower(hostPath), ".gz")
	if gz {
		hostPath = hostPath[:len(hostPath)-3]
	}
	name := "livestate"
	if !it.live {
		name = r.p.cfg.Routes.Route(it.target, hostPath)
	}
	if name == noParser {
		return nil
	}
	rc, err := it.open()
	if err != nil {
		r.problem(it.path, name, "open: "+err.Error())
		return nil
	}
	defer rc.Close()
	var src io.Reader = rc
	if it.live {
		b, err := io.ReadAll(io.LimitReader(rc, maxLiveDoc+1))
		switch sum := sha256.Sum256(b); {
		case err != nil:
			r.problem(it.path, name, "read: "+err.Error())
			return nil
		case len(b) > maxLiveDoc:
			r.problem(it.path, name, fmt.Sprintf("larger than %d bytes; not read", maxLiveDoc))
			return nil
		case hex.EncodeToString(sum[:]) != it.sha256:
			r.problem(it.path, name, "hash_mismatch: content differs from the manifest's SHA-256; skipped")
			return nil
		}
		src = bytes.NewReader(b)
	}
	if gz {
		zr, err := gzip.NewReader(bufio.NewReader(src))
		if err != nil {
			r.problem(it.path, name, "not a readable gzip file: "+err.Error())
			return nil
		}
		defer zr.Close()
		src = &capReader{r: zr, left: r.p.cfg.MaxGzSize, limit: r.p.cfg.MaxGzSize}
	}
	br := bufio.NewReaderSize(src, 64<<10)
	// A read error after some bytes (a cut-off or capped stream) is left for the parser to meet,
	// so that what comes before it is still read.
	head, err := br.Peek(parse.HeadSize)
	if len(head) == 0 && err != nil && err != io.EOF {
		r.problem(it.path, name, "read: "+err.Error())
		return nil
	}
	pin := parse.Input{Path: it.path, HostPath: hostPath, Host: r.host, ModTime: it.times[0], Collected: in.collected, TZ: in.tz}
	if it.live {
		pin.HostPath, pin.Collected = "", in.liveCollected
	}
	var parser parse.Parser
	if name != "" {
		var ok bool
		if parser, ok = parse.Lookup(name); !ok {
			r.problem(it.path, name, "the route names a parser that does not exist")
			return nil
		}
	} else if parser, err = sniff(head, pin); err != nil {
		r.problem(it.path, "", err.Error())
		return nil
	} else if parser.Name == "" {
		return nil // nothing reads this kind of file
	}
	pr := r.parser(parser.Name)
	pr.Files++
	start := r.p.cfg.Now()
	st, err := safeParse(ctx, parser, pin, br, r.emit)
	pr.DurationMS += r.p.cfg.Now().Sub(start).Milliseconds()
	pr.Records += int64(st.Records)
	pr.Events += int64(st.Events)
	pr.Skipped += int64(st.Skipped)
	var se *storeError
	switch {
	case errors.As(err, &se):
		return se
	case ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		pr.Errors++
		r.problem(it.path, parser.Name, fmt.Sprintf("stopped after %s: %v", st.String(), err))
	case st.Skipped > 0:
		r.problem(it.path, parser.Name, "partly read: "+st.String())
	}
	return nil
}

func sniff(head []byte, in parse.Input) (p parse.Parser, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("a parser's sniffing crashed on this file: %v", v)
		}
	}()
	p, _ = parse.Sniff(head, in)
	return p, nil
}

// safeParse runs a parser, turning a panic (a parser bug that hostile input found) into an error
// for this file alone.
func safeParse(ctx context.Context, p parse.Parser, in parse.Input, r io.Reader, emit func(*quarry.Event) error) (st parse.Stats, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("parser %s crashed: %v", p.Name, v)
		}
	}()
	return p.Parse(ctx, in, r, emit)
}

// capReader ends a decompressed stream with an error once it passed its limit.
type capReader struct {
	r     io.Reader
	left  int64
	limit int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, fmt.Errorf("decompressed past %d bytes; the rest was not read", c.limit)
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

var macb = [4]struct{ letter, desc, verb string }{
	{"M", "Modification Time", "modified"},
	{"A", "Access Time", "accessed"},
	{"C", "Metadata Change Time", "metadata changed"},
	{"B", "Creation Time", "created"},
}

// fileEvents emits one event per distinct time of a collected file, naming which of its
// modification, access, change and birth times fell on it.
func (r *run) fileEvents(it item) error { return r.timeEvents(it, SourceFile, nil) }

// timeEvents emits the file events of it, counted under report, with extra fields.
func (r *run) timeEvents(it item, report string, extra map[string]any) error {
	type group struct {
		t     time.Time
		which [4]bool
	}
	var groups []*group
	for i, t := range it.times {
		if t.IsZero() {
			continue
		}
		var g *group
		for _, x := range groups {
			if x.t.Equal(t) {
				g = x
			}
		}
		if g == nil {
			g = &group{t: t}
			groups = append(groups, g)
		}
		g.which[i] = true
	}
	sort.Slice(groups, func(i, j int) bool { return groups[i].t.Before(groups[j].t) })
	pr := r.parser(report)
	if report == SourceFile {
		pr.Files++
	}
	pr.Records++
	for _, g := range groups {
		flags := []byte("....")
		var descs, verbs []string
		for i, on := range g.which {
			if on {
				flags[i] = macb[i].letter[0]
				descs = append(descs, macb[i].desc)
				verbs = append(verbs, macb[i].verb)
			}
		}
		f := map[string]any{"size": it.size, "macb": string(flags), "file_path": it.hostPath}
		if it.sha256 != "" {
			f["sha256"] = it.sha256
		}
		if it.target != "" {
			f["target"] = it.target
		}
		for k, v := range extra {
			f[k] = v
		}
		ev := &quarry.Event{Timestamp: g.t.UTC(), TimestampDesc: strings.Join(descs, "; "), Source: SourceFile, Host: r.host,
			Message: fmt.Sprintf("%s: %s %s", it.hostPath, flags, strings.Join(verbs, ", ")), Path: it.path, Fields: f}
		pr.Events++
		if err := r.emit(ev); err != nil {
			return err
		}
	}
	return nil
}

// emit adds an event to the batch and writes the batch when it is full.
func (r *run) emit(ev *quarry.Event) error {
	ev.ProjectID, ev.EvidenceID = r.e.ProjectID, r.e.ID
	if ev.Host == "" {
		ev.Host = r.host
	}
	sanitize(ev)
	for _, d := range r.detectors {
		d.Detect(ev)
	}
	if len(ev.Detections) > 0 {
		r.report.Detections++
	}
	r.batch = append(r.batch, ev)
	if len(r.batch) >= r.p.cfg.BatchSize {
		return r.flush(r.ctx)
	}
	return nil
}

func (r *run) flush(ctx context.Context) error {
	if len(r.batch) == 0 {
		return nil
	}
	err := r.p.cfg.Events.InsertEvents(ctx, r.batch)
	stored := len(r.batch)
	if quarry.ErrorCode(err) == quarry.EINVALID {
		// One event the store refuses (a field type, a size) must not cost the whole batch, nor
		// fail the evidence: write them one by one and report the refused ones.
		stored, err = 0, nil
		for _, ev := range r.batch {
			if ierr := r.p.cfg.Events.InsertEvents(ctx, []*quarry.Event{ev}); quarry.ErrorCode(ierr) == quarry.EINVALID {
				r.problem(ev.Path, ev.Source, "event refused by the store: "+quarry.ErrorMessage(ierr))
				if pr := r.report.Parsers[ev.Source]; pr != nil {
					pr.Events--
					pr.Skipped++
				}
				continue
			} else if ierr != nil {
				err = ierr
				break
			}
			stored++
		}
	}
	if err != nil {
		return &storeError{fmt.Errorf("processing: evidence %d: insert %d events: %w", r.e.ID, len(r.batch), err)}
	}
	r.report.Events += int64(stored)
	r.batch = make([]*quarry.Event, 0, min(r.p.cfg.BatchSize, 1024))
	return r.progress(ctx)
}

// sanitize makes an event's text storable: valid UTF-8 without NUL (the store refuses a whole batch
// for one bad string, and hostile files are full of them).
func sanitize(ev *quarry.Event) {
	for _, s := range []*string{&ev.TimestampDesc, &ev.Source, &ev.Host, &ev.User, &ev.Message, &ev.Path} {
		*s = cleanText(*s)
	}
	for k, v := range ev.Fields {
		ck := cleanText(k)
		if ck != k {
			delete(ev.Fields, k)
		}
		ev.Fields[ck] = cleanValue(v)
	}
}

func cleanValue(v any) any {
	switch x := v.(type) {
	case string:
		return cleanText(x)
	case []string:
		for i := range x {
			x[i] = cleanText(x[i])
		}
	case []any:
		for i := range x {
			x[i] = cleanValue(x[i])
		}
	case map[string]any:
		for k, y := range x {
			x[k] = cleanValue(y)
		}
	}
	return v
}

func cleanText(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
}

// listEntry is one line of a listing (collector/glob.go writes them).
type listEntry struct {
	Path  string `json:"path"`
	Size  int64  `json:"size"`
	Mode  string `json:"mode"`
	MTime string `json:"mtime"`
	ATime string `json:"atime"`
	CTime string `json:"ctime"`
	BTime string `json:"btime"`
	Link  string `json:"link"`
}

// listing turns a list-only target's listing into file events: names and times of files whose
// content was not collected (/tmp, /dev/shm), where droppers like to sit. The listing is hashed in
// a first pass, so that a tampered one adds nothing.
func (r *run) listing(ctx context.Context, it item) error {
	rc, err := it.open()
	if err != nil {
		r.problem(it.path, ReportListing, "open: "+err.Error())
		return nil
	}
	h := sha256.New()
	_, err = io.Copy(h, rc)
	rc.Close()
	if err != nil {
		r.problem(it.path, ReportListing, "read: "+err.Error())
		return nil
	}
	if hex.EncodeToString(h.Sum(nil)) != it.sha256 {
		r.problem(it.path, ReportListing, "hash_mismatch: content differs from the manifest's SHA-256; skipped")
		return nil
	}
	if rc, err = it.open(); err != nil {
		r.problem(it.path, ReportListing, "open: "+err.Error())
		return nil
	}
	defer rc.Close()
	pr := r.parser(ReportListing)
	pr.Files++
	sc := bufio.NewScanner(rc)
	sc.Buffer(make([]byte, 64<<10), maxListingLine)
	for n := 1; sc.Scan(); n++ {
		if n&1023 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		var le listEntry
		if err := json.Unmarshal(sc.Bytes(), &le); err != nil || le.Path == "" {
			pr.Records++
			pr.Skipped++
			continue
		}
		extra := map[string]any{"listed": true}
		if le.Mode != "" {
			extra["mode"] = le.Mode
		}
		if le.Link != "" {
			extra["link"] = le.Link
		}
		li := item{path: it.path, hostPath: le.Path, target: it.target, size: le.Size,
			times: [4]time.Time{parseTime(le.MTime), parseTime(le.ATime), parseTime(le.CTime), parseTime(le.BTime)}}
		if err := r.timeEvents(li, ReportListing, extra); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		pr.Errors++
		r.problem(it.path, ReportListing, "stopped: "+err.Error())
	}
	return nil
}
