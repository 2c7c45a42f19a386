package sqldb

// SetEventPageWindow makes the window that FindEvents looks at before its trigram search small,
// so that tests with few events go through both.
func SetEventPageWindow(s *EventService, n int) { s.window = n }
