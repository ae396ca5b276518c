# Sources and tests of the session part.
