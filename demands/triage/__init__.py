"""One-step triage: status, priority, owner and a comment of one demand in one change (one form,
one service call, one version), keyboard menus and the command palette in static/js/triage.js."""
