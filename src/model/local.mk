# Sources and tests of the model part.
