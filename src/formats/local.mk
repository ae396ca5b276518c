# Sources and tests of the formats part.
