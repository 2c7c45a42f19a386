package http

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/quarry-dfir/quarry"
)

// alertRoutes mounts the API of XDR alerts and detection rules (issue #9). Rules start
// acquisitions, so changing them takes the analyst role, like starting one.
func (s *Server) alertRoutes() {
	if s.Alerts != nil {
		s.api("GET /api/v1/alerts", quarry.RoleViewer, "", s.handleListAlerts)
		s.api("GET /api/v1/alerts/{id}", quarry.RoleViewer, "", s.handleGetAlert)
	}
	if s.DetectionRules != nil {
		s.api("GET /api/v1/detection-rules", quarry.RoleViewer, "", s.handleListRules)
		s.api("POST /api/v1/detection-rules", quarry.RoleAnalyst, "detection_rule.create", s.handleCreateRule)
		s.api("GET /api/v1/detection-rules/{id}", quarry.RoleViewer, "", s.handleGetRule)
		s.api("PUT /api/v1/detection-rules/{id}", quarry.RoleAnalyst, "detection_rule.update", s.handleUpdateRule)
		s.api("PUT /api/v1/detection-rules/{id}/enabled", quarry.RoleAnalyst, "detection_rule.enable", s.handleEnableRule)
		s.api("DELETE /api/v1/detection-rules/{id}", quarry.RoleAnalyst, "detection_rule.delete", s.handleDeleteRule)
	}
}

// alertFilter reads the alert filters shared by the API and the page: connection_id,
// severity, status, category, host, from, to (RFC 3339) and paging.
func alertFilter(r *http.Request) (quarry.AlertFilter, int, error) {
	q := r.URL.Query()
	f := quarry.AlertFilter{Severity: strings.TrimSpace(q.Get("severity")), Status: strings.TrimSpace(q.Get("status")),
		Category: strings.TrimSpace(q.Get("category")), Host: strings.TrimSpace(q.Get("host"))}
	if v := q.Get("connection_id"); v != "" {
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil || id <= 0 {
			return f, 0, quarry.FieldError("connection_id", "connection_id must be a connection's id.")
		}
		f.ConnectionID = &id
	}
	var err error
	if f.From, err = queryTime(r, "from"); err != nil {
		return f, 0, err
	}
	if f.To, err = queryTime(r, "to"); err != nil {
		return f, 0, err
	}
	if f.Offset, f.Limit, err = paging(r, 50, 500); err != nil {
		return f, 0, err
	}
	return f, f.Offset/f.Limit + 1, nil
}

func (s *Server) handleListAlerts(w http.ResponseWriter, r *http.Request) error {
	f, page, err := alertFilter(r)
	if err != nil {
		return err
	}
	as, total, err := s.Alerts.FindAlerts(r.Context(), f)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"alerts": as, "page": page, "per_page": f.Limit, "total": total})
	return nil
}

func (s *Server) handleGetAlert(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id", "alert")
	if err != nil {
		return err
	}
	a, err := s.Alerts.FindAlertByID(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a)
	return nil
}

// ruleInput is a detection rule as a client sends it. project_id null (or absent) makes a new
// project per matching alert.
type ruleInput struct {
	Name            string   `json:"name"`
	Enabled         *bool    `json:"enabled"`
	MinSeverity     string   `json:"min_severity"`
	Categories      []string `json:"categories"`
	Techniques      []string `json:"techniques"`
	TitleContains   string   `json:"title_contains"`
	HostPatterns    []string `json:"host_patterns"`
	ConnectionID    *int64   `json:"connection_id"`
	ProjectID       *int64   `json:"project_id"`
	Profile         string   `json:"profile"`
	CooldownSeconds int64    `json:"cooldown_seconds"`
	CommentOnAlert  bool     `json:"comment_on_alert"`
}

func (in ruleInput) rule() *quarry.DetectionRule {
	return &quarry.DetectionRule{Name: in.Name, Enabled: in.Enabled == nil || *in.Enabled, MinSeverity: in.MinSeverity,
		Categories: in.Categories, Techniques: in.Techniques, TitleContains: in.TitleContains, HostPatterns: in.HostPatterns,
		ConnectionID: in.ConnectionID, ProjectID: in.ProjectID, Profile: in.Profile, CooldownSecs: in.CooldownSeconds,
		CommentOnAlert: in.CommentOnAlert}
}

func ruleDetails(rule *quarry.DetectionRule) map[string]any {
	return map[string]any{"name": rule.Name, "enabled": rule.Enabled, "project_id": rule.ProjectID}
}

func (s *Server) handleListRules(w http.ResponseWriter, r *http.Request) error {
	offset, limit, err := paging(r, 100, 1000)
	if err != nil {
		return err
	}
	rules, total, err := s.DetectionRules.FindDetectionRules(r.Context(), quarry.DetectionRuleFilter{Offset: offset, Limit: limit})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"rules": rules, "total": total})
	return nil
}

func (s *Server) handleCreateRule(w http.ResponseWriter, r *http.Request) error {
	var in ruleInput
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	rule := in.rule()
	if err := s.DetectionRules.CreateDetectionRule(r.Context(), rule); err != nil {
		return err
	}
	auditTarget(r, "detection_rule", rule.ID, ruleDetails(rule))
	w.Header().Set("Location", fmt.Sprintf("/api/v1/detection-rules/%d", rule.ID))
	writeJSON(w, http.StatusCreated, rule)
	return nil
}

func (s *Server) handleGetRule(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id", "detection rule")
	if err != nil {
		return err
	}
	rule, err := s.DetectionRules.FindDetectionRuleByID(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rule)
	return nil
}

func (s *Server) handleUpdateRule(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id", "detection rule")
	if err != nil {
		return err
	}
	var in ruleInput
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	rule := in.rule()
	rule.ID = id
	auditTarget(r, "detection_rule", id, nil)
	if err := s.DetectionRules.UpdateDetectionRule(r.Context(), rule); err != nil {
		return err
	}
	auditTarget(r, "detection_rule", id, ruleDetails(rule))
	writeJSON(w, http.StatusOK, rule)
	return nil
}

func (s *Server) handleEnableRule(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id", "detection rule")
	if err != nil {
		return err
	}
	var in struct {
		Enabled *bool `json:"enabled"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if in.Enabled == nil {
		return quarry.FieldError("enabled", "Send {\"enabled\": true} or {\"enabled\": false}.")
	}
	auditTarget(r, "detection_rule", id, map[string]any{"enabled": *in.Enabled})
	rule, err := s.DetectionRules.SetDetectionRuleEnabled(r.Context(), id, *in.Enabled)
	if err != nil {
		return err
	}
	auditTarget(r, "detection_rule", id, ruleDetails(rule))
	writeJSON(w, http.StatusOK, rule)
	return nil
}

func (s *Server) handleDeleteRule(w http.ResponseWriter, r *http.Request) error {
	if err := s.deleteRule(r); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// deleteRule deletes the rule named by the path's id, for the API and the page's form; the
// audit entry names the rule, or only its id when it was not found.
func (s *Server) deleteRule(r *http.Request) error {
	id, err := pathID(r, "id", "detection rule")
	if err != nil {
		return err
	}
	auditTarget(r, "detection_rule", id, nil)
	rule, err := s.DetectionRules.FindDetectionRuleByID(r.Context(), id)
	if err != nil {
		return err
	}
	if err := s.DetectionRules.DeleteDetectionRule(r.Context(), id); err != nil {
		return err
	}
	auditTarget(r, "detection_rule", id, map[string]any{"name": rule.Name})
	return nil
}
