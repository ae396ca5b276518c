# Sources and tests of the linalg part.
