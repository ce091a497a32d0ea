"""notify: delivers the `alert` rows of the tickerplant to people (email over SMTP, Slack / Teams
incoming webhooks, a generic JSON webhook, a log file) and records every attempt as a `notice` row.
See docs/notify.md."""
