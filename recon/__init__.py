"""The live parallel run: matches each official CCP figure (`ccpmargin`) with the margin calc had
published as of its cut-off and publishes `recon` rows and `recon` alerts. See recon/engine.py."""
