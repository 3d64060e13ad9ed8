// The console's one script: live updates where a page asks for them. Every page works
// without it.
"use strict";
