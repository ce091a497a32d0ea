"""The CCP statements feedhandler: publishes the CCP's official requirements (`ccpmargin`) from the
statement files dropped in a folder. See feedhandlers/statements/__main__.py and docs/reconcile.md."""
