"""kaudit over HTTP: the receiver, the query API and the dashboard."""
