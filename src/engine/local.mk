# Sources and tests of the engine part.
