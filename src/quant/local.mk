# Sources and tests of the quant part.
