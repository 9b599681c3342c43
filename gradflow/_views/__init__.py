"""Views: plots, derivation reports and their documents."""
