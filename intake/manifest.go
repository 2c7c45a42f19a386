package intake

import (
	"io"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/collector"
)

// manifestInfo is what receipt reads from a package's manifest.json: the summary, the facts
// stored beside the evidence, and how many problems the package reader found.
type manifestInfo struct {
	Summary          quarry.ManifestSummary
	Hostname         string
	CollectorVersion string
	Problems         int
}

// readManifest opens a package with the collector's reader (structure and manifest checks,
// no content hashing: that is processing's job) and summarises its manifest.
func readManifest(r io.ReaderAt, size int64) (*manifestInfo, error) {
	p, err := collector.OpenPackage(r, size)
	if err != nil {
		return nil, err
	}
	m := p.Manifest
	return &manifestInfo{
		Summary: quarry.ManifestSummary{Format: clean(m.Format), Files: int64(len(m.Files)), Skipped: int64(len(m.Skipped)),
			Bytes: m.Stats.Bytes, OS: clean(m.Host.OS), Profile: clean(m.Profile)},
		Hostname:         clean(m.Host.Hostname),
		CollectorVersion: clean(m.Collector.Version),
		Problems:         len(p.Problems),
	}, nil
}
