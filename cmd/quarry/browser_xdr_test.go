package main

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/sqldb"
)

// TestBrowserDefenderImport follows the product page's steps in a real browser: turn the
// experiment on, add a Defender connection (the emulator), open Import → XDR → Defender in a
// project, page through the hosts with a selection that survives paging, and filter.
func TestBrowserDefenderImport(t *testing.T) {
	ctx := browser(t)
	sim := startSim(t, 130)
	ts := startServer(t, sqldb.DialectSQLite)
	shots := artifacts(t, "defender-import")
	base := ts.m.URL()
	app := sim.DefaultApp()
	p := &quarry.Project{Name: "Incident 7", CreatedBy: ts.adminUser.ID}
	if err := sqldb.NewProjectService(ts.m.DB).CreateProject(context.Background(), p); err != nil {
		t.Fatal(err)
	}

	steps(t, ctx,
		chromedp.Navigate(base+"/login"),
		waitVisible(`input[name=username]`),
		chromedp.SendKeys(css(`input[name=username]`), "alice"),
		chromedp.SendKeys(css(`input[name=password]`), ts.adminPW),
		nav(chromedp.Submit(css(`input[name=password]`)), `a[href="/settings"]`),
		// Before the experiment is on, the import page offers no XDR source.
		chromedp.Navigate(base+"/projects/"+itoa(p.ID)+"/import"),
		waitVisible(`h1`),
	)
	if n := value(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll('#import-xdr-defender').length`)); n != 0 {
		t.Fatalf("Defender import shown while the experiment is off")
	}
	steps(t, ctx,
		chromedp.Navigate(base+"/settings/experiments"),
		waitVisible(`#toggle-defender_xdr`),
		nav(chromedp.Click(css(`#toggle-defender_xdr`)), `#exp-defender_xdr .badge.on`),
		chromedp.Navigate(base+"/settings/integrations"),
		waitVisible(`#add-connection summary`),
		chromedp.Click(css(`#add-connection summary`)),
		chromedp.SendKeys(css(`#add-connection input[name=name]`), "Contoso (emulator)"),
		chromedp.SendKeys(css(`#add-connection input[name=tenant_id]`), app.TenantID),
		chromedp.SendKeys(css(`#add-connection input[name=client_id]`), app.ClientID),
		chromedp.SendKeys(css(`#add-connection input[name=client_secret]`), app.ClientSecret),
		chromedp.SetValue(css(`#add-connection select[name=cloud]`), "custom"),
		chromedp.SendKeys(css(`#add-connection input[name=api_url]`), sim.APIURL()),
		chromedp.SendKeys(css(`#add-connection input[name=authority_url]`), sim.AuthorityURL()),
		chromedp.SetValue(css(`#add-connection textarea[name=ca_cert]`), string(sim.CACertPEM())),
		screenshot(shots, "01-add-connection"),
		nav(chromedp.Click(css(`#add-connection button[type=submit]`)), `#check-result`),
		screenshot(shots, "02-connection-checked"),
	)
	if health := value(t, ctx, chromedp.Text(css(`table .badge`))); health != "ok" {
		t.Fatalf("connection health after adding = %q", health)
	}
	if page := value(t, ctx, chromedp.Evaluate[string](`document.body.innerHTML`)); strings.Contains(page, app.ClientSecret) {
		t.Fatal("the integrations page shows the client secret")
	}

	steps(t, ctx,
		chromedp.Navigate(base+"/projects/"+itoa(p.ID)),
		nav(chromedp.Click(css(`a.button[href$="/import"]`)), `#import-xdr-defender`),
		screenshot(shots, "03-import"),
		nav(chromedp.Click(css(`#import-xdr-defender`)), `#hosts`),
		screenshot(shots, "04-hosts-page1"),
	)
	if total := value(t, ctx, chromedp.Text(css(`#host-total`))); total != "130" {
		t.Fatalf("host total = %q, want 130", total)
	}
	rows := value(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll('#hosts tbody input.host-select').length`))
	if rows != 50 {
		t.Fatalf("first page shows %d hosts, want 50", rows)
	}
	// Select two hosts on page 1, move to page 2 and select one more, come back.
	steps(t, ctx,
		chromedp.Click(css(`#hosts tbody tr:nth-child(1) input.host-select`)),
		chromedp.Click(css(`#hosts tbody tr:nth-child(2) input.host-select`)),
		nav(chromedp.Click(css(`#next-page`)), `a[rel=prev]`),
		chromedp.Click(css(`#hosts tbody tr:nth-child(3) input.host-select`)),
		screenshot(shots, "05-hosts-page2"),
	)
	if sel := value(t, ctx, chromedp.Text(css(`#selection-count`))); sel != "3 selected" {
		t.Fatalf("selection on page 2 = %q, want 3 selected", sel)
	}
	steps(t, ctx, nav(chromedp.Click(css(`a[rel=prev]`)), `#next-page`))
	checked := value(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll('#hosts tbody input.host-select:checked').length`))
	if checked != 2 {
		t.Fatalf("back on page 1, %d boxes are checked, want the 2 chosen there", checked)
	}

	// Search by the name of a known host and filter offline hosts.
	target := sim.Machines()[42]
	steps(t, ctx,
		chromedp.SendKeys(css(`#host-filters input[name=q]`), target.ComputerDNSName),
		nav(chromedp.Submit(css(`#host-filters input[name=q]`)), `#hosts`),
		screenshot(shots, "06-search"),
	)
	if names := value(t, ctx, chromedp.Text(css(`#hosts tbody`))); !strings.Contains(names, target.ComputerDNSName) {
		t.Fatalf("search for %q shows %q", target.ComputerDNSName, names)
	}
	steps(t, ctx,
		chromedp.Navigate(base+"/projects/"+itoa(p.ID)+"/import/xdr/defender?online=false&per_page=25"),
		waitVisible(`#hosts`),
		screenshot(shots, "07-offline"),
	)
	states := value(t, ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('#hosts tbody td:nth-child(4)')).map(e => e.textContent.trim())`))
	if len(states) == 0 {
		t.Fatal("no offline hosts listed")
	}
	for _, s := range states {
		if s != "offline" {
			t.Fatalf("offline filter lists a host that is %q", s)
		}
	}
}

func itoa(id int64) string { return strconv.FormatInt(id, 10) }
