# Sources and tests of the export part.
