"""The dashboard's widgets: each reads the view model (host.dashboard.model) and draws one panel."""
