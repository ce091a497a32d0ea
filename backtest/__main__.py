import sys

from backtest.run import main

sys.exit(main())
