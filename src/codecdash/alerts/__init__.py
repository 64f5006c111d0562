"""Alerts: rules over the dashboard's facts, a state machine per alert, notifications.

- :mod:`~codecdash.alerts.rules` — each rule a small declared object with a pure
  ``evaluate(facts, now)``;
- :mod:`~codecdash.alerts.facts` — what rules read: the snapshot, and the store's queries;
- :mod:`~codecdash.alerts.engine` — inactive → pending → firing → resolved, per rule and
  labels, with pending periods and cool-downs;
- :mod:`~codecdash.store.alerts` — that state, its history and the notification outbox,
  kept in the store (a restart neither repeats nor forgets);
- :mod:`~codecdash.alerts.channels` — webhook, Slack, Teams, e-mail and SNS;
- :mod:`~codecdash.alerts.delivery` — the outbox's sender: grouping, rate limit, retries;
- :mod:`~codecdash.alerts.service` — the loop in the server, one sender among replicas.
"""
