#!/bin/sh
# Writes a C file that includes one header alone, to prove it is self-contained.
printf '#include "%s"\nint main(void)\n{\n\treturn 0;\n}\n' "$1" > "$2"
