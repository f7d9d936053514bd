"""A small CTC character recognizer: the intelligibility judge of synthesized speech."""
