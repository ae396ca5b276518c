# Sources and tests of the calib part.
