package tools

import _ "example.com/nope"
