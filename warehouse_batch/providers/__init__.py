"""Provider clients behind one interface."""
