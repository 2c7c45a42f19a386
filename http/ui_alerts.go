package http

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/quarry-dfir/quarry"
)

// alertPages mounts Detections: the alerts XDR platforms raised, with filters in the URL, and
// the detection rules that turn alerts into acquisitions. Without an alert store the page says
// there is nothing yet.
func (s *Server) alertPages() {
	if s.Alerts == nil {
		s.page("GET /detections", quarry.RoleViewer, "", func(w http.ResponseWriter, r *http.Request) error {
			return s.render(w, r, http.StatusOK, "detections", view{Title: "Detections", Nav: "detections"})
		})
		return
	}
	// The Detections entry of the navigation opens the alerts (no redirect: the nav link and
	// the alerts' own address show the same page).
	s.page("GET /detections", quarry.RoleViewer, "", s.handleAlertsPage)
	s.page("GET /detections/alerts", quarry.RoleViewer, "", s.handleAlertsPage)
	if s.DetectionRules != nil {
		s.page("GET /detections/rules", quarry.RoleViewer, "", s.handleRulesPage)
		s.page("POST /detections/rules", quarry.RoleAnalyst, "detection_rule.create", s.handleRuleCreateForm)
		s.page("POST /detections/rules/{id}/enable", quarry.RoleAnalyst, "detection_rule.enable", s.handleRuleEnableForm(true))
		s.page("POST /detections/rules/{id}/disable", quarry.RoleAnalyst, "detection_rule.enable", s.handleRuleEnableForm(false))
		s.page("POST /detections/rules/{id}/delete", quarry.RoleAnalyst, "detection_rule.delete", s.handleRuleDeleteForm)
	}
}

// alertRow is an alert as the page shows it, with its links worked out.
type alertRow struct {
	*quarry.Alert
	Connection string
	HostLink   string // the host's alerts; or the host list of the project it was acquired into
	Links      []alertAcqLink
}

type alertAcqLink struct {
	Href, Label string
}

func (s *Server) handleAlertsPage(w http.ResponseWriter, r *http.Request) error {
	f, _, err := alertFilter(r)
	if err != nil {
		return err
	}
	as, total, err := s.Alerts.FindAlerts(r.Context(), f)
	if err != nil {
		return err
	}
	conns := map[int64]*quarry.Connection{}
	var connList []*quarry.Connection
	if s.Connections != nil {
		cs, _, err := s.Connections.FindConnections(r.Context(), quarry.ConnectionFilter{IncludeDeleted: true, Limit: 1000})
		if err != nil {
			return err
		}
		for _, c := range cs {
			conns[c.ID] = c
			if c.DeletedAt == nil {
				connList = append(connList, c)
			}
		}
	}
	rows := make([]alertRow, 0, len(as))
	for _, a := range as {
		row := alertRow{Alert: a, Connection: strconv.FormatInt(a.ConnectionID, 10),
			HostLink: "/detections/alerts?" + url.Values{"host": {a.HostID}}.Encode()}
		c := conns[a.ConnectionID]
		if c != nil {
			row.Connection = c.Name
		}
		for _, l := range a.Acquisitions {
			row.Links = append(row.Links, alertAcqLink{Href: fmt.Sprintf("/projects/%d/acquisitions#acq-%d", l.ProjectID, l.AcquisitionID),
				Label: fmt.Sprintf("Acquisition %d", l.AcquisitionID)})
			if c != nil {
				short, _, _ := strings.Cut(a.HostName, ".")
				row.HostLink = fmt.Sprintf("/projects/%d/import/xdr/%s?", l.ProjectID, url.PathEscape(c.Provider)) +
					url.Values{"connection": {strconv.FormatInt(c.ID, 10)}, "q": {short}}.Encode()
			}
		}
		rows = append(rows, row)
	}
	q := r.URL.Query()
	base := url.Values{}
	for k, v := range q {
		if k != "page" && k != "offset" && k != "limit" && k != "per_page" {
			base[k] = v
		}
	}
	data := map[string]any{"Alerts": rows, "Total": total, "Query": q, "Connections": connList, "Severities": quarry.AlertSeverities,
		"Statuses": []string{"New", "InProgress", "Resolved"}, "Pager": pager{Offset: f.Offset, Limit: f.Limit, Total: total, BaseQuery: base},
		"From": formTime(f.From), "To": formTime(f.To)}
	return s.render(w, r, http.StatusOK, "alerts", view{Title: "Alerts · Detections", Nav: "detections", Data: data})
}

// formTime shows a filter time in the form's own notation.
func formTime(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func (s *Server) rulesView(r *http.Request, data map[string]any) (view, error) {
	rules, _, err := s.DetectionRules.FindDetectionRules(r.Context(), quarry.DetectionRuleFilter{Limit: 1000})
	if err != nil {
		return view{}, err
	}
	projects, _, err := s.Projects.FindProjects(r.Context(), quarry.ProjectFilter{Limit: 1000})
	if err != nil {
		return view{}, err
	}
	names := map[int64]string{}
	for _, p := range projects {
		names[p.ID] = p.Name
	}
	rows := make([]ruleRow, 0, len(rules))
	for _, rule := range rules {
		row := ruleRow{DetectionRule: rule}
		if rule.ProjectID != nil {
			row.ProjectHref = fmt.Sprintf("/projects/%d", *rule.ProjectID)
			row.ProjectName = names[*rule.ProjectID]
		}
		rows = append(rows, row)
	}
	data["Rules"], data["Projects"], data["Severities"] = rows, projects, quarry.AlertSeverities
	return view{Title: "Detection rules · Detections", Nav: "detections", Data: data}, nil
}

// ruleRow is a rule as the page shows it, with the name of the project it acquires into.
type ruleRow struct {
	*quarry.DetectionRule
	ProjectHref, ProjectName string
}

func (s *Server) handleRulesPage(w http.ResponseWriter, r *http.Request) error {
	v, err := s.rulesView(r, map[string]any{})
	if err != nil {
		return err
	}
	return s.render(w, r, http.StatusOK, "rules", v)
}

// splitList reads a form field of comma- or line-separated values.
func splitList(v string) []string {
	return strings.FieldsFunc(v, func(c rune) bool { return c == ',' || c == '\n' || c == '\r' })
}

// ruleForm is the create form as typed, to show again with an error.
type ruleForm struct {
	Name, MinSeverity, Categories, Techniques, TitleContains, HostPatterns, ProjectID, Profile, CooldownHours string
	CommentOnAlert, Enabled                                                                                   bool
}

func (s *Server) handleRuleCreateForm(w http.ResponseWriter, r *http.Request) error {
	form := ruleForm{Name: r.PostFormValue("name"), MinSeverity: r.PostFormValue("min_severity"), Categories: r.PostFormValue("categories"),
		Techniques: r.PostFormValue("techniques"), TitleContains: r.PostFormValue("title_contains"), HostPatterns: r.PostFormValue("host_patterns"),
		ProjectID: r.PostFormValue("project_id"), Profile: r.PostFormValue("profile"), CooldownHours: r.PostFormValue("cooldown_hours"),
		CommentOnAlert: r.PostFormValue("comment_on_alert") != "", Enabled: r.PostFormValue("enabled") != ""}
	rule := &quarry.DetectionRule{Name: form.Name, Enabled: form.Enabled, MinSeverity: form.MinSeverity, Categories: splitList(form.Categories),
		Techniques: splitList(form.Techniques), TitleContains: form.TitleContains, HostPatterns: splitList(form.HostPatterns),
		Profile: form.Profile, CommentOnAlert: form.CommentOnAlert}
	var err error
	if form.ProjectID != "" && form.ProjectID != "new" {
		id, perr := strconv.ParseInt(form.ProjectID, 10, 64)
		if perr != nil || id <= 0 {
			err = quarry.FieldError("project_id", "Choose a project, or a new project per alert.")
		}
		rule.ProjectID = &id
	}
	if err == nil && strings.TrimSpace(form.CooldownHours) != "" {
		h, perr := strconv.ParseFloat(strings.TrimSpace(form.CooldownHours), 64)
		if perr != nil || h <= 0 || h > 24*365 {
			err = quarry.FieldError("cooldown_hours", "Cool-down must be a number of hours from 0.01 to 8760.")
		} else {
			rule.Cooldown = max(time.Duration(h*float64(time.Hour)).Round(time.Second), time.Second)
		}
	}
	if err == nil {
		err = s.DetectionRules.CreateDetectionRule(r.Context(), rule)
	}
	if quarry.ErrorCode(err) == quarry.EINVALID || quarry.ErrorCode(err) == quarry.ECONFLICT {
		v, verr := s.rulesView(r, map[string]any{"Form": form})
		if verr != nil {
			return verr
		}
		v.Error = quarry.ErrorMessage(err)
		return s.render(w, r, http.StatusBadRequest, "rules", v)
	} else if err != nil {
		return err
	}
	auditTarget(r, "detection_rule", rule.ID, ruleDetails(rule))
	http.Redirect(w, r, "/detections/rules", http.StatusSeeOther)
	return nil
}

func (s *Server) handleRuleEnableForm(enabled bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		id, err := pathID(r, "id", "detection rule")
		if err != nil {
			return err
		}
		auditTarget(r, "detection_rule", id, map[string]any{"enabled": enabled})
		rule, err := s.DetectionRules.SetDetectionRuleEnabled(r.Context(), id, enabled)
		if err != nil {
			return err
		}
		auditTarget(r, "detection_rule", id, ruleDetails(rule))
		http.Redirect(w, r, "/detections/rules", http.StatusSeeOther)
		return nil
	}
}

func (s *Server) handleRuleDeleteForm(w http.ResponseWriter, r *http.Request) error {
	if err := s.deleteRule(r); err != nil {
		return err
	}
	http.Redirect(w, r, "/detections/rules", http.StatusSeeOther)
	return nil
}
