"""`python -m airscene ...` and `torchrun ... -m airscene ...` run the airscene command."""

import sys

from airscene.cli import main

sys.exit(main())
