# Sources and tests of the tui part.
