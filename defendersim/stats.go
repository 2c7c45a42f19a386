package defendersim

import (
	"encoding/json"
	"maps"
	"net/http"
)

// Stats are the emulator's counters, also served at GET /_sim/stats.
type Stats struct {
	MaxConcurrentSessions int            `json:"max_concurrent_sessions"`
	SessionsStarted       int            `json:"sessions_started"`
	RejectedConcurrency   int            `json:"rejected_concurrency"`
	RejectedRate          int            `json:"rejected_rate"`
	RejectedActiveRequest int            `json:"rejected_active_request"`
	CallsByEndpoint       map[string]int `json:"calls_by_endpoint"`
	// RateRejectedByEndpoint breaks RejectedRate down by endpoint: a client's budget for
	// launches and for polling are different problems.
	RateRejectedByEndpoint map[string]int `json:"rate_rejected_by_endpoint"`
}

// Stats returns a snapshot of the counters.
func (s *Sim) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.CallsByEndpoint = maps.Clone(s.stats.CallsByEndpoint)
	st.RateRejectedByEndpoint = maps.Clone(s.stats.RateRejectedByEndpoint)
	return st
}

func (s *Sim) handleStats(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	json.NewEncoder(w).Encode(s.Stats())
}
